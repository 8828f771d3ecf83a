"""``streamd check``: open the model and every source once, say what was found."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamd.config.schema import Config
from streamd.errors import StreamdError
from streamd.inference.factory import build_detector
from streamd.sources.frame import Frame
from streamd.sources.readers import make_reader, redact


def check_config(config: Config, say: Callable[[str], None]) -> bool:
    """True when the model and every source opened; each finding is one line through ``say``."""
    say(f"config {config.path or '(built-in)'}: valid, {len(config.sources)} source(s)")
    ok = True
    try:
        detector = build_detector(config.model)
    except StreamdError as error:
        say(f"model {config.model.path}: FAILED: {error}")
        detector = None
        ok = False
    if detector is not None:
        backend = getattr(detector, "backend", None)
        say(f"model {config.model.path}: ok ({backend.describe() if backend else detector.model_id}, "
            f"{len(config.model.classes)} classes)")
    for source in config.sources:
        reader = make_reader(source)
        where = redact(source.url) or source.kind
        try:
            reader.open()
            item = reader.read()
            if item is None:
                raise StreamdError("opened, but delivered no frame")
            image = item[0]
            line = f"source {source.id} ({source.kind} {where}): ok, {image.shape[1]}x{image.shape[0]}"
            if reader.native_fps:
                line += f" at {reader.native_fps:g} fps"
            if detector is not None:
                frame = Frame(source.id, 0, 0.0, 0.0, np.ascontiguousarray(image))
                results = detector.submit(frame) + detector.drain()
                line += f", {sum(len(r.detections) for r in results)} detection(s) on the first frame"
            say(line)
        except StreamdError as error:
            say(f"source {source.id} ({source.kind} {where}): FAILED: {error}")
            ok = False
        finally:
            reader.close()
    if detector is not None:
        detector.close()
    say("all good" if ok else "problems found")
    return ok

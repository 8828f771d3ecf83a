"""``streamd check``: open the model and every source once, say what was found."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import numpy as np

from streamd.config.load import split_bind
from streamd.config.schema import Config
from streamd.errors import StreamdError
from streamd.frame import Frame
from streamd.inference.factory import build_detector
from streamd.sources.nvdec import reader_factory as nvdec_reader_factory
from streamd.sources.readers import make_reader, redact


def _decoding(detector: object, classes: tuple[str, ...]) -> str:
    """Family, layout, input size, preprocessing and classes, as far as the detector tells them."""
    from streamd.yolox.decoders import layout_family  # noqa: PLC0415

    layout = getattr(getattr(detector, "decoder", None), "layout", "")
    convention = getattr(detector, "convention", None)
    size = getattr(detector, "input_size", None)
    shown = ", ".join(classes[:5]) + (f", ... ({len(classes)})" if len(classes) > 5 else "")
    parts = [f"family {layout_family(layout)}, layout {layout}" if layout else "",
             f"input {size[0]}x{size[1]}" if size else "",
             f"preprocessing {convention.name}" if convention is not None else "", f"classes {shown}"]
    return ", ".join(part for part in parts if part)


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
        say(f"model {config.model.path}: {_decoding(detector, config.model.classes)}")
    # nvdec sources decode on model.device, as the daemon does (streamd.daemon.service).
    open_reader = (nvdec_reader_factory(config.model.device) if any(s.decoder == "nvdec" for s in config.sources)
                   else make_reader)
    for source in config.sources:
        reader = open_reader(source)
        where = f"{source.kind} {redact(source.url)}" if source.url else source.kind
        try:
            reader.open()
            item = reader.read()
            if item is None:
                raise StreamdError("opened, but delivered no frame")
            image = item[0]
            line = f"source {source.id} ({where}): ok, {image.shape[1]}x{image.shape[0]}"
            if reader.native_fps:
                line += f" at {reader.native_fps:g} fps"
            if detector is not None:
                # An NVDEC frame stays in GPU memory (the batched GPU detector reads it there).
                pixels = np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image
                frame = Frame(source.id, 0, 0.0, 0.0, pixels)
                results = detector.submit(frame) + detector.drain()
                line += f", {sum(len(r.detections) for r in results)} detection(s) on the first frame"
            if not isinstance(image, np.ndarray) and hasattr(image, "release"):
                image.release()  # back to the reader's surface pool
            say(line)
        except StreamdError as error:
            say(f"source {source.id} ({where}): FAILED: {error}")
            ok = False
        finally:
            reader.close()
    if detector is not None:
        detector.close()
    ok = _check_ports(config, say) and ok
    say("all good" if ok else "problems found")
    return ok


def _check_ports(config: Config, say: Callable[[str], None]) -> bool:
    """Bind the publisher's and the metrics server's ports once and release them: a port another
    process holds fails ``run`` at start-up, so ``check`` reports it."""
    ok = True
    endpoint = config.publish.endpoint
    if endpoint.startswith("tcp://") and not endpoint.endswith(":*"):
        host, port = endpoint[len("tcp://"):].rsplit(":", 1)
        ok = _try_bind("publisher", endpoint, "publish.endpoint", "" if host == "*" else host, int(port), say) and ok
    if config.metrics.enabled:
        host, port = split_bind(config.metrics.bind)
        if port:
            ok = _try_bind("metrics", f"http://{config.metrics.bind}", "metrics.bind", host, port, say) and ok
    if config.preview.enabled:
        host, port = split_bind(config.preview.bind, "preview.bind")
        if port:
            ok = _try_bind("preview", f"http://{config.preview.bind}/", "preview.bind", host, port, say) and ok
    return ok


def bind_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound for listening now (then released), else why not."""
    host = host.strip("[]")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):  # SO_REUSEADDR, as ZeroMQ and http.server
            return None
    except OSError as error:
        return os.strerror(error.errno) if error.errno else str(error)


def _try_bind(what: str, where: str, key: str, host: str, port: int, say: Callable[[str], None]) -> bool:
    problem = bind_problem(host, port)
    if problem is None:
        say(f"{what} {where}: ok, port {port} is free")
        return True
    say(f"{what} {where}: FAILED: cannot bind {host or '*'}:{port}: {problem} (another streamd running? "
        f"change {key})")
    return False

"""Which worker runs which source: balanced by pixel rate, stable across reloads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from streamd.config.schema import Config, SourceConfig

# A camera or file whose size and rate the config does not say is planned as 1080p at 30 fps.
ASSUMED_WIDTH, ASSUMED_HEIGHT, ASSUMED_FPS = 1920, 1080, 30.0
# Sources one worker serves on the GPU path, as 1080p30 streams (benchmarks.md, "Many cameras").
GPU_WORKER_STREAMS = 24
ONE_STREAM = ASSUMED_WIDTH * ASSUMED_HEIGHT * ASSUMED_FPS
# Images and synthetic scenes without an fps repeat at this rate (streamd.sources.capture).
DEFAULT_READ_FPS = 10.0


def pixel_rate(source: SourceConfig) -> float:
    """Pixels a second the source is expected to deliver (a paced source; `fast` ones as 30 fps)."""
    if source.kind == "synthetic":
        return source.width * source.height * (source.fps or DEFAULT_READ_FPS)
    if source.kind == "image":
        return ASSUMED_WIDTH * ASSUMED_HEIGHT * (source.fps or DEFAULT_READ_FPS)
    return ASSUMED_WIDTH * ASSUMED_HEIGHT * (source.fps or ASSUMED_FPS)


def uses_gpu_path(config: Config) -> bool:
    return config.model.backend == "tensorrt" or config.model.max_batch > 1 or any(
        s.decoder == "nvdec" for s in config.sources)


def worker_count(config: Config, devices: Sequence[int]) -> int:
    """``daemon.workers`` as a number: ``auto`` is one on the CPU path (ONNX Runtime already spreads a
    frame over the cores); on the GPU path enough workers for the sources' pixel rate, at least one per
    GPU, never more than there are sources."""
    requested = config.daemon.workers
    if requested != "auto":
        return int(requested)
    if not uses_gpu_path(config):
        return 1
    needed = math.ceil(sum(pixel_rate(s) for s in config.sources) / (GPU_WORKER_STREAMS * ONE_STREAM))
    return max(1, min(len(config.sources), max(needed, len(devices))))


def assign(sources: Sequence[SourceConfig], workers: int, previous: Mapping[str, int] | None = None) -> dict[str, int]:
    """Source id -> worker index. A source keeps its previous worker (a reload moves nothing that runs);
    the others go, heaviest first, to the worker with the least pixel rate so far."""
    previous = previous or {}
    load = [0.0] * workers
    assignment: dict[str, int] = {}
    for source in sources:
        worker = previous.get(source.id)
        if worker is not None and 0 <= worker < workers:
            assignment[source.id] = worker
            load[worker] += pixel_rate(source)
    for source in sorted((s for s in sources if s.id not in assignment), key=pixel_rate, reverse=True):
        worker = min(range(workers), key=lambda index: (load[index], index))
        assignment[source.id] = worker
        load[worker] += pixel_rate(source)
    return assignment

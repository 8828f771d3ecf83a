"""Frame in, detections out: the unit the daemon's pipeline drives.

A detector owns preprocessing, a backend and decoding for one model. It may be pipelined (the GPU
detector keeps two frames in flight): ``submit`` returns the results that completed, in submission
order, possibly none yet; ``drain`` returns whatever is still in flight. The CPU detector completes
every frame inside ``submit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from streamd.decode.detections import Detections
from streamd.sources.frame import Frame
from streamd.sources.frame_pool import Allocator


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage on one frame (GPU stages measured with CUDA events)."""

    preprocess_seconds: float
    inference_seconds: float
    decode_seconds: float


@dataclass(frozen=True)
class DetectionResult:
    frame: Frame
    detections: Detections  # boxes in original-frame pixels
    timings: StageTimings


class Detector(ABC):
    model_id: str
    class_names: tuple[str, ...]

    @abstractmethod
    def submit(self, frame: Frame) -> list[DetectionResult]: ...

    def drain(self) -> list[DetectionResult]:
        return []

    def frame_allocator(self) -> Allocator | None:
        """Memory this detector prefers frames in (the GPU: pinned), for the capture's frame pool."""
        return None

    @abstractmethod
    def close(self) -> None: ...

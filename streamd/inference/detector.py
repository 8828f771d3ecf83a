"""Frame in, detections out: the unit the daemon's pipeline drives.

A detector owns preprocessing, a backend and decoding for one model. It may be pipelined (the GPU
detector keeps two frames in flight): ``submit`` returns the results that completed, in submission
order, possibly none yet; ``drain`` returns whatever is still in flight. The CPU detector completes
every frame inside ``submit``.

Batching: a detector declares ``max_batch`` (1: one frame at a time). With ``max_batch > 1`` the
pipeline hands ``submit_batch`` up to that many frames at once, at most one per source, and the same
rules hold: results in submission order (frames of earlier calls first), possibly none yet, one
result per frame in the end (``drain``). The default ``submit_batch`` runs the frames one by one
through ``submit``, so a detector that cannot batch still works.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from streamd.frame import Allocator, Frame
from streamd.yolox.detections import Detections


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage on one frame (GPU stages measured with CUDA events). A frame of a
    batch carries the batch's stage time divided by the batch size (the cost per frame)."""

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
    max_batch: int = 1  # the most frames one submit_batch call takes

    @abstractmethod
    def submit(self, frame: Frame) -> list[DetectionResult]: ...

    def submit_batch(self, frames: Sequence[Frame]) -> list[DetectionResult]:
        """Up to ``max_batch`` frames (of different sources) at once. Default: one by one."""
        results: list[DetectionResult] = []
        for frame in frames:
            results.extend(self.submit(frame))
        return results

    def drain(self) -> list[DetectionResult]:
        return []

    def frame_allocator(self) -> Allocator | None:
        """Memory this detector prefers frames in (the GPU: pinned), for the capture's frame pool."""
        return None

    @abstractmethod
    def close(self) -> None: ...

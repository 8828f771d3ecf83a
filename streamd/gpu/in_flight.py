"""One in-flight frame: the buffers and events it owns while the GPU works on it (GpuDetector
keeps ``slots`` of them and cycles through them).

Per in-flight frame: a pinned uint8 host frame, the device frame, the network input and outputs on the device,
the device candidate area and its pinned host copy, and the events that order and time the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamd.cuda import memory, stream
from streamd.frame import Frame
from streamd.inference.base import TensorSpec
from streamd.yolox.preprocess import Letterbox


def _nbytes(spec: TensorSpec) -> int:
    count = 1
    for dim in spec.shape:
        if dim is None:
            raise ValueError(f"tensor {spec.name} has a dynamic shape {spec.shape}; the GPU pipeline needs a "
                             "static batch-1 shape")
        count *= dim
    return count * np.dtype(spec.dtype).itemsize


@dataclass
class InFlightFrame:
    index: int
    host_frame: memory.PinnedBuffer
    device_frame: memory.DeviceBuffer
    device_tensors: dict[str, memory.DeviceBuffer]
    device_area: memory.DeviceBuffer
    host_area: memory.PinnedBuffer
    uploaded: stream.Event
    started: stream.Event
    preprocessed: stream.Event
    inferred: stream.Event
    done: stream.Event
    addresses: dict[str, int] = field(default_factory=dict)
    frame: Frame | None = None
    geometry: Letterbox | None = None
    enqueued_at: float = 0.0
    # The host frame viewed as the last frame size: built once, not per frame (five numpy calls).
    _view_size: tuple[int, int] | None = field(default=None, repr=False)
    _view: np.ndarray | None = field(default=None, repr=False)

    @property
    def busy(self) -> bool:
        return self.frame is not None

    @classmethod
    def allocate(cls, index: int, max_frame_bytes: int, tensors: list[TensorSpec], area_nbytes: int,
                 host_area: memory.PinnedBuffer) -> InFlightFrame:
        device_tensors = {spec.name: memory.DeviceBuffer(_nbytes(spec), tuple(spec.shape), spec.dtype)
                          for spec in tensors}
        slot = cls(index=index,
                   host_frame=memory.PinnedBuffer((max_frame_bytes,), np.uint8),
                   device_frame=memory.DeviceBuffer(max_frame_bytes),
                   device_tensors=device_tensors,
                   device_area=memory.DeviceBuffer(area_nbytes),
                   host_area=host_area,
                   uploaded=stream.Event(timing=False),
                   started=stream.Event(), preprocessed=stream.Event(), inferred=stream.Event(),
                   done=stream.Event())
        slot.addresses = {name: buffer.ptr for name, buffer in device_tensors.items()}
        return slot

    def frame_view(self, width: int, height: int) -> np.ndarray:
        """The pinned host frame as an HxWx3 uint8 array (it must hold that many bytes)."""
        if self._view_size != (width, height):
            self._view = self.host_frame.view((height, width, 3), np.uint8)
            self._view_size = (width, height)
        return self._view

    def grow_frame(self, nbytes: int) -> None:
        """Reallocate the frame buffers for a larger frame (the slot must be idle)."""
        self._view_size, self._view = None, None
        self.host_frame.free()
        self.device_frame.free()
        self.host_frame = memory.PinnedBuffer((nbytes,), np.uint8)
        self.device_frame = memory.DeviceBuffer(nbytes)

    def free(self) -> None:
        """Release in reverse order of allocation; safe to call twice."""
        for event in (self.done, self.inferred, self.preprocessed, self.started, self.uploaded):
            event.close()
        self.host_area.free()
        self.device_area.free()
        for buffer in self.device_tensors.values():
            buffer.free()
        self.device_frame.free()
        self.host_frame.free()

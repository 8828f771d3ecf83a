"""Zero-copy GpuDetector: frames read in place from mapped page-locked host memory, results written there.

The copy path (``GpuDetector``) uploads each frame from pinned host memory to a device buffer on a copy
stream and copies the candidates back. On an integrated GPU (Jetson: CPU and GPU share one DRAM) both
copies only move bytes from one place in the same memory to another, costing bandwidth the decoders and
the model need. Here instead:

- each slot's frame buffer, and the capture's frame pool (``frame_allocator``), is
  ``cudaHostAlloc(cudaHostAllocMapped)`` memory; the letterbox kernel reads the frame through its
  device address (``cudaHostGetDevicePointer``): no upload, no copy stream, no ``uploaded`` event;
- with ``mapped_results`` the decode kernel's candidate area (counter + records) is mapped memory too:
  the host reads the count and records in place after the slot's ``done`` event, so there is no
  copy back and no overflow fetch (the area holds every cell).

What stays the same: the letterbox and decode kernels (same arithmetic, so the same detections), the
engine's input and output in device memory, two slots in flight, results in order.

On a discrete GPU (``model.zero_copy = "on"``) every kernel read of a frame crosses PCIe, and the
decode kernel's atomic counter and records live in host memory (device-scope atomics on mapped memory:
atomic for the device, which is the only writer; the host reads after the event). That is slower than
the copy path by design; ``tools/gpu_zero_copy_check.py`` measures both and compares detections.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamd.config.schema import ZERO_COPY_MODES
from streamd.cuda import memory, runtime, stream
from streamd.cuda.device_info import DeviceInfo
from streamd.cuda.mapped import DeviceAlias, MappedBuffer, device_pointer_of
from streamd.cuda.stream import Stream
from streamd.errors import BackendError
from streamd.gpu.detector import GpuDetector
from streamd.gpu.slots import Slot
from streamd.inference.base import TensorSpec
from streamd.sources.frame_pool import Allocator

log = logging.getLogger(__name__)


@dataclass
class MappedSlot(Slot):
    """A slot whose frame buffer is mapped host memory; ``device_frame`` aliases its device address."""

    def grow_frame(self, nbytes: int) -> None:
        self._view_size, self._view = None, None
        self.host_frame.free()
        self.host_frame = MappedBuffer((nbytes,), np.uint8)
        self.device_frame = DeviceAlias(self.host_frame.device_ptr, nbytes)


class ZeroCopyGpuDetector(GpuDetector):
    """``GpuDetector`` reading frames (and, with ``mapped_results``, writing candidates) in mapped host memory."""

    def __init__(self, *args, mapped_results: bool = True, **kwargs) -> None:
        # Set before GpuDetector.__init__, which allocates the slots through _allocate_slot.
        self.mapped_results = mapped_results
        self._pool_lock = threading.Lock()
        self._pool_buffers: dict[int, MappedBuffer] = {}  # host address -> frame pool buffer
        self.frames_in_place = 0  # frames read where the capture left them (pool or host_frame_buffer)
        self.frames_copied = 0  # frames in ordinary memory, copied into the slot's mapped buffer first
        super().__init__(*args, **kwargs)

    # -- public API -------------------------------------------------------------------------------

    def frame_allocator(self) -> Allocator:
        """Mapped buffers for the capture's frame pool: the letterbox kernel then reads the frame where the
        capture thread wrote it."""
        device = self.device

        def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
            runtime.use_device(device)  # called from a capture thread
            buffer = MappedBuffer(shape, dtype)
            with self._pool_lock:
                self._pool_buffers[buffer.ptr] = buffer

            def free() -> None:
                with self._pool_lock:
                    self._pool_buffers.pop(buffer.ptr, None)
                buffer.free()

            return buffer.array, free

        return allocate

    # -- GpuDetector's hooks ----------------------------------------------------------------------

    def _allocate_slot(self, index: int, max_frame_bytes: int, tensors: list[TensorSpec]) -> Slot:
        # The engine's input and output stay in device memory (TensorRT writes them many times per frame).
        device_tensors = {spec.name: memory.DeviceBuffer.for_array(tuple(spec.shape), spec.dtype) for spec in tensors}
        host_frame = MappedBuffer((max_frame_bytes,), np.uint8)
        area_nbytes = self.decoder.device_area_nbytes
        if self.mapped_results:
            host_area = MappedBuffer((area_nbytes // 4,), np.float32)
            device_area = DeviceAlias(host_area.device_ptr, area_nbytes)
            # The host reads the whole area in place: every candidate is "copied back", none overflow.
            self.decoder.host_capacity = self.decoder.cells
        else:
            host_area = self.decoder.new_host_area()
            device_area = memory.DeviceBuffer(area_nbytes)
        slot = MappedSlot(index=index, host_frame=host_frame,
                          device_frame=DeviceAlias(host_frame.device_ptr, max_frame_bytes),
                          device_tensors=device_tensors, device_area=device_area, host_area=host_area,
                          uploaded=stream.Event(timing=False), started=stream.Event(),
                          preprocessed=stream.Event(), inferred=stream.Event(), done=stream.Event())
        slot.addresses = {name: buffer.ptr for name, buffer in device_tensors.items()}
        return slot

    def _stage_frame(self, slot: Slot, image: np.ndarray, width: int, height: int) -> int:
        nbytes = image.nbytes
        if nbytes > slot.host_frame.nbytes:
            slot.grow_frame(nbytes)
        view = slot.frame_view(width, height)
        mapped: MappedBuffer = slot.host_frame  # type: ignore[assignment]
        if image is view:  # decoded into host_frame_buffer()
            self.frames_in_place += 1
            return mapped.device_ptr
        if image.flags.c_contiguous:
            address = image.__array_interface__["data"][0]
            with self._pool_lock:
                pooled = self._pool_buffers.get(address)
            if pooled is not None and pooled.contains(image):
                self.frames_in_place += 1
                return pooled.device_address(image)
            if mapped.contains(image):
                self.frames_in_place += 1
                return mapped.device_address(image)
            if memory.is_pinned(image):  # page-locked elsewhere: mapped too where the system has UVA
                device_ptr = device_pointer_of(address)
                if device_ptr is not None:
                    self.frames_in_place += 1
                    return device_ptr
        # Ordinary memory: one host memcpy into the slot's mapped buffer, which the kernel then reads.
        np.copyto(view, image)
        self.frames_copied += 1
        return mapped.device_ptr

    def _fetch_results(self, slot: Slot, compute: Stream) -> None:
        if not self.mapped_results:
            super()._fetch_results(slot, compute)
        # Mapped results: the decode kernel wrote them where the host reads them; ``done`` orders it.


def resolve_zero_copy(mode: str, info: DeviceInfo) -> bool:
    """``model.zero_copy`` for this device: ``auto`` on an integrated GPU that can map host memory; ``on``
    forced (a discrete GPU too: every frame read crosses PCIe, slower, for exercising and comparing the
    path); ``off`` the copy path. BackendError for ``on`` where host memory cannot be mapped."""
    if mode not in ZERO_COPY_MODES:
        raise BackendError(f"model.zero_copy '{mode}' is not one of {list(ZERO_COPY_MODES)}")
    if mode == "off":
        return False
    if mode == "on":
        if not info.can_map_host_memory:
            raise BackendError(f"model.zero_copy = \"on\" but GPU {info.ordinal} ({info.name}) cannot map host "
                               "memory (cudaDevAttrCanMapHostMemory = 0); set it to \"auto\" or \"off\"")
        return True
    return info.integrated and info.can_map_host_memory

"""Zero-copy GpuDetector: frames read in place from mapped page-locked host memory, results written there.

The copy path (``GpuDetector``) uploads each frame from pinned host memory to a device buffer on a copy
stream and copies the candidates back. On an integrated GPU (Jetson: CPU and GPU share one DRAM) both
copies only move bytes from one place in the same memory to another, costing bandwidth the decoders and
the model need. Here instead:

- each slot's frame buffer, and the capture's frame pool (``frame_allocator``), is
  ``cudaHostAlloc(cudaHostAllocMapped)`` memory; the letterbox kernel reads the frame through its
  device address (``cudaHostGetDevicePointer``): no upload, no copy stream, no ``uploaded`` event;
- with ``mapped_results`` the decode kernel writes its candidate records into mapped memory, and a
  one-thread kernel writes the count beside them: the host reads both in place after the slot's
  ``done`` event, so there is no copy back and no overflow fetch (the area holds every cell). The
  atomic counter the decode kernel increments stays in device memory: atomics on host memory across
  PCIe depend on the platform (PCIe AtomicOps), plain stores do not.

What stays the same: the letterbox and decode kernels (same arithmetic, so the same detections), the
engine's input and output in device memory, two slots in flight, results in order.

On a discrete GPU (``model.zero_copy = "on"``) every kernel read of a frame and every record written
crosses PCIe. That is slower than the copy path by design; ``benchmarks/gpu_zero_copy_check.py`` measures
both and compares detections.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamd.config.schema import ZERO_COPY_MODES
from streamd.cuda import memory, nvrtc, runtime, stream
from streamd.cuda.device_info import DeviceInfo
from streamd.cuda.mapped import DeviceAlias, MappedBuffer, device_pointer_of
from streamd.errors import BackendError
from streamd.frame import Allocator
from streamd.gpu.detector import GpuDetector
from streamd.gpu.in_flight import InFlightFrame
from streamd.gpu.postprocess import _BLOCK as _DECODE_BLOCK
from streamd.gpu.postprocess import HEADER_BYTES, RECORD_BYTES, SELECTED_ROWS, GpuYoloxDecoder
from streamd.inference.base import TensorSpec

log = logging.getLogger(__name__)


# Copies the decode kernel's candidate count (device memory, where its atomics run) into the mapped
# area's header, which the host reads after the slot's event.
PUBLISH_COUNT_SOURCE = r"""
extern "C" __global__ void publish_count(const int* __restrict__ counter, int* __restrict__ header) {
    *header = *counter;
}
"""
_PUBLISH_ARG_TYPES = (ctypes.c_void_p, ctypes.c_void_p)


class MappedFrames:
    """The capture's frame pool in mapped memory, and where a kernel finds a host frame in place.

    ``allocator()`` is the detector's ``frame_allocator()``: each buffer is mapped and remembered until
    freed, so ``device_address`` of a pool frame is a dictionary lookup; other page-locked memory is asked
    of CUDA (mapped wherever the system has unified addressing). Thread-safe: capture threads allocate
    and free, the pipeline looks up.
    """

    def __init__(self, device: int) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._buffers: dict[int, MappedBuffer] = {}  # host address -> pool buffer

    def allocator(self) -> Allocator:
        def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
            runtime.use_device(self.device)  # called from a capture thread
            buffer = MappedBuffer(shape, dtype)
            with self._lock:
                self._buffers[buffer.ptr] = buffer

            def free() -> None:
                with self._lock:
                    self._buffers.pop(buffer.ptr, None)
                buffer.free()

            return buffer.array, free

        return allocate

    def device_address(self, image: np.ndarray) -> int | None:
        """The device address of a contiguous frame in mapped memory; None for ordinary (pageable) memory."""
        if not image.flags.c_contiguous:
            return None
        address = image.__array_interface__["data"][0]
        with self._lock:
            pooled = self._buffers.get(address)
        if pooled is not None and pooled.contains(image):
            return pooled.device_address(image)
        if memory.is_pinned(image):  # page-locked elsewhere: mapped too where the system has UVA
            return device_pointer_of(address)
        return None


class MappedResultsDecoder(GpuYoloxDecoder):
    """``GpuYoloxDecoder`` whose records go to mapped host memory: ``launch(output, counter, stream)`` takes
    the slot's device counter (zeroed by the letterbox kernel) and writes the records and then the count
    into the mapped area registered for that counter; nothing is copied back."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300,
                 host_capacity: int = 0, device: int = 0, selected_rows: int = SELECTED_ROWS) -> None:
        super().__init__(layout, input_width, input_height, num_classes, score_threshold, nms_threshold,
                         max_detections, host_capacity or 1, device, selected_rows)
        self.host_capacity = self.cells  # the host reads the whole area: no candidate can overflow
        module = nvrtc.load_module(PUBLISH_COUNT_SOURCE, "publish_count", ("-std=c++17",), device)
        self._publish = nvrtc.Kernel(module, "publish_count", _PUBLISH_ARG_TYPES)
        # counter address -> (engine output address, decode launch, publish launch); one per slot
        self._mapped_launches: dict[int, tuple[int, nvrtc.BoundLaunch, nvrtc.BoundLaunch]] = {}
        self._areas: dict[int, MappedBuffer] = {}

    @property
    def mapped_area_nbytes(self) -> int:
        return HEADER_BYTES + self.cells * RECORD_BYTES

    def register(self, counter_ptr: int, area: MappedBuffer) -> None:
        """Results of frames whose counter is at ``counter_ptr`` go to ``area`` (one pair per slot)."""
        self._areas[counter_ptr] = area
        self._mapped_launches.pop(counter_ptr, None)

    def launch(self, output_ptr: int, area_ptr: int, stream_ptr: int) -> None:
        """Decode into the mapped area registered for the counter at ``area_ptr``, then publish the count."""
        launches = self._mapped_launches.get(area_ptr)
        if launches is None or launches[0] != output_ptr:
            area = self._areas[area_ptr]
            grid = ((self.cells + _DECODE_BLOCK - 1) // _DECODE_BLOCK, 1, 1)
            decode = self._kernel.bind(grid, (_DECODE_BLOCK, 1, 1), (
                output_ptr, self.cells, self.channels, self._grid.ptr, self.mode,
                float(self.score_threshold), area_ptr, area.device_ptr + HEADER_BYTES, self.cells, self.num_classes))
            publish = self._publish.bind((1, 1, 1), (1, 1, 1), (area_ptr, area.device_ptr))
            launches = self._mapped_launches[area_ptr] = (output_ptr, decode, publish)
        launches[1].launch(stream_ptr)
        launches[2].launch(stream_ptr)

    def copy_back(self, area_ptr: int, host_area: memory.PinnedBuffer, stream_ptr: int) -> None:
        """Nothing to copy: the records and the count are already in host memory."""


@dataclass
class MappedSlot(InFlightFrame):
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
        if mapped_results:
            self.decoder_class = MappedResultsDecoder
        self.mapped_frames = MappedFrames(kwargs.get("device", 0))
        self.frames_in_place = 0  # frames read where the capture left them (pool or host_frame_buffer)
        self.frames_copied = 0  # frames in ordinary memory, copied into the slot's mapped buffer first
        super().__init__(*args, **kwargs)

    # -- public API -------------------------------------------------------------------------------

    def frame_allocator(self) -> Allocator:
        """Mapped buffers for the capture's frame pool: the letterbox kernel then reads the frame where the
        capture thread wrote it."""
        return self.mapped_frames.allocator()

    # -- GpuDetector's hooks ----------------------------------------------------------------------

    def _allocate_slot(self, index: int, max_frame_bytes: int, tensors: list[TensorSpec]) -> InFlightFrame:
        # The engine's input and output stay in device memory (TensorRT writes them many times per frame).
        device_tensors = {spec.name: memory.DeviceBuffer.for_array(tuple(spec.shape), spec.dtype) for spec in tensors}
        host_frame = MappedBuffer((max_frame_bytes,), np.uint8)
        if self.mapped_results:
            # The counter the decode kernel's atomics increment stays in device memory (the letterbox kernel
            # zeroes it); records and the published count go to the mapped area the host reads.
            decoder: MappedResultsDecoder = self.decoder  # type: ignore[assignment]
            device_area = memory.DeviceBuffer(HEADER_BYTES)
            host_area = MappedBuffer((decoder.mapped_area_nbytes // 4,), np.float32)
            decoder.register(device_area.ptr, host_area)
        else:
            device_area = memory.DeviceBuffer(self.decoder.device_area_nbytes)
            host_area = self.decoder.new_host_area()
        slot = MappedSlot(index=index, host_frame=host_frame,
                          device_frame=DeviceAlias(host_frame.device_ptr, max_frame_bytes),
                          device_tensors=device_tensors, device_area=device_area, host_area=host_area,
                          uploaded=stream.Event(timing=False), started=stream.Event(),
                          preprocessed=stream.Event(), inferred=stream.Event(), done=stream.Event())
        slot.addresses = {name: buffer.ptr for name, buffer in device_tensors.items()}
        return slot

    def _stage_frame(self, slot: InFlightFrame, image: np.ndarray, width: int, height: int) -> int:
        nbytes = image.nbytes
        if nbytes > slot.host_frame.nbytes:
            slot.grow_frame(nbytes)
        view = slot.frame_view(width, height)
        mapped: MappedBuffer = slot.host_frame  # type: ignore[assignment]
        if image is view:  # decoded into host_frame_buffer()
            self.frames_in_place += 1
            return mapped.device_ptr
        if image.flags.c_contiguous and mapped.contains(image):
            self.frames_in_place += 1
            return mapped.device_address(image)
        device_ptr = self.mapped_frames.device_address(image)
        if device_ptr is not None:  # the capture's mapped pool, or other page-locked memory
            self.frames_in_place += 1
            return device_ptr
        # Ordinary memory: one host memcpy into the slot's mapped buffer, which the kernel then reads.
        np.copyto(view, image)
        self.frames_copied += 1
        return mapped.device_ptr


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

"""Batched GPU decode (every GPU layout): score filter and compaction of N frames in one launch, one copy
back per batch.

Device area of a batch of ``n`` (``max_batch`` at most):
  ``n`` headers of 32 bytes (int32 count + padding; the batched letterbox zeroes them)
  ``n * host_capacity`` records of 8 floats (frame-major), right after the headers
  -- both copied back with one ``cuMemcpyDtoHAsync`` --
  then an overflow region of ``cells`` records per frame (at a fixed offset) for the rare frame with
  more than ``host_capacity`` candidates, fetched synchronously for that frame only.
Records are bit-identical to the single-frame decoder's; sort and NMS are the same host code.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np

from streamd.cuda import memory, nvrtc, runtime
from streamd.gpu.kernels import BATCH_DECODE_SOURCE
from streamd.gpu.postprocess import HEADER_BYTES, RECORD_BYTES, RECORD_FLOATS, SELECTED_ROWS, GpuYoloxDecoder

log = logging.getLogger(__name__)

_BLOCK = 256
_ARG_TYPES = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
              ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int)


class GpuBatchYoloxDecoder(GpuYoloxDecoder):
    """The single-frame decoder's grid, thresholds and NMS, with a batched kernel and area layout."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_batch: int, max_detections: int = 300,
                 host_capacity: int = 256, device: int = 0, selected_rows: int = SELECTED_ROWS) -> None:
        super().__init__(layout, input_width, input_height, num_classes, score_threshold, nms_threshold,
                         max_detections, host_capacity, device, selected_rows)
        self.max_batch = max_batch
        module = nvrtc.load_module(BATCH_DECODE_SOURCE, "yolox_decode_batch", ("--fmad=false", "-std=c++17"), device)
        self._batch_kernel = nvrtc.Kernel(module, "yolox_decode_batch_f32", _ARG_TYPES)

    @property
    def batch_area_nbytes(self) -> int:
        return self.max_batch * (HEADER_BYTES + self.host_capacity * RECORD_BYTES + self.cells * RECORD_BYTES)

    def copy_back_nbytes_for(self, count: int) -> int:
        return count * (HEADER_BYTES + self.host_capacity * RECORD_BYTES)

    def counter_ptrs(self, area_ptr: int, count: int) -> list[int]:
        return [area_ptr + i * HEADER_BYTES for i in range(count)]

    def _overflow_ptr(self, area_ptr: int) -> int:
        return area_ptr + self.max_batch * (HEADER_BYTES + self.host_capacity * RECORD_BYTES)

    def new_batch_host_area(self) -> memory.PinnedBuffer:
        return memory.PinnedBuffer((self.copy_back_nbytes_for(self.max_batch) // 4,), np.float32)

    def launch_batch(self, outputs_ptr: int, area_ptr: int, count: int, stream_ptr: int) -> None:
        """Decode ``count`` frames' outputs (``count`` x ``output_shape`` float32 at ``outputs_ptr``)."""
        grid = ((self.cells + _BLOCK - 1) // _BLOCK, count, 1)
        self._batch_kernel.launch(grid, (_BLOCK, 1, 1), stream_ptr, (
            outputs_ptr, self.cells, self.channels, self._grid.ptr, self.mode,
            float(self.score_threshold), area_ptr, area_ptr + count * HEADER_BYTES, self.host_capacity,
            self._overflow_ptr(area_ptr), self.num_classes))

    def copy_back_batch(self, area_ptr: int, host_area: memory.PinnedBuffer, count: int, stream_ptr: int) -> None:
        memory.copy_dtoh_async(host_area.ptr, area_ptr, self.copy_back_nbytes_for(count), stream_ptr)

    def batch_records(self, host_area: np.ndarray, area_ptr: int, count: int, index: int) -> np.ndarray:
        """(K, 8) records of frame ``index`` of a completed batch of ``count``, in cell order."""
        header_floats = HEADER_BYTES // 4
        found = int(host_area[index * header_floats:index * header_floats + 1].view(np.int32)[0])
        start = count * header_floats + index * self.host_capacity * RECORD_FLOATS
        kept = min(found, self.host_capacity)
        rows = host_area[start:start + kept * RECORD_FLOATS].reshape(kept, RECORD_FLOATS)
        if found > self.host_capacity:
            rows = np.concatenate((rows, self._fetch_batch_overflow(area_ptr, index, found)))
        if len(rows) <= 1:
            return rows.copy()
        return rows[rows[:, 6].argsort(kind="stable")]

    def _fetch_batch_overflow(self, area_ptr: int, index: int, found: int) -> np.ndarray:
        log.debug("frame %d: %d candidates exceed the %d copied back; fetching the rest", index, found,
                  self.host_capacity)
        if self._overflow is None:
            self._overflow = memory.PinnedBuffer((self.cells * RECORD_FLOATS,), np.float32)
        extra = found - self.host_capacity
        source = self._overflow_ptr(area_ptr) + (index * self.cells + self.host_capacity) * RECORD_BYTES
        cudart, _, _ = runtime.bindings()  # rare path: a synchronous copy is fine
        runtime.check(cudart.cudaMemcpy(self._overflow.ptr, source, extra * RECORD_BYTES,
                                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy(batch overflow)")
        return self._overflow.array[:extra * RECORD_FLOATS].reshape(extra, RECORD_FLOATS).copy()

"""GPU decode (YOLOX, Ultralytics, NMS-free, RT-DETR): score filter and compaction on the device, NMS on the few
candidates on the host.

Per slot the device holds a candidate area of ``8 + 8 * cells`` floats (a header whose first int32 is
the count, then one 8-float record per surviving cell). Only the header and the first
``host_capacity`` records are copied back each frame; the rare frame with more candidates fetches the
rest with one extra synchronous copy (logged), so no detection is ever lost.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np

from streamd.cuda import memory, nvrtc, runtime
from streamd.errors import ModelLayoutError
from streamd.gpu.kernels import DECODE_SOURCE
from streamd.yolox.detections import Detections
from streamd.yolox.nms import class_aware_nms_indices
from streamd.yolox.postprocess import STRIDES, grid_cells

log = logging.getLogger(__name__)

RECORD_FLOATS = 8
RECORD_BYTES = RECORD_FLOATS * 4
HEADER_BYTES = RECORD_BYTES  # count (int32) + padding, so records stay 32-byte aligned
DEFAULT_HOST_CAPACITY = 256
_BLOCK = 256
_MAX_BOUND_LAUNCHES = 64
_ARG_TYPES = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
              ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
# layout -> the kernels' ``mode`` (streamd.gpu.kernels: layout_candidate)
KERNEL_MODES = {"yolox": 0, "yolox-decoded": 1, "ultralytics": 2, "ultralytics-transposed": 3, "end2end": 4,
                "rtdetr": 5, "rtdetr-queries": 6}
GPU_LAYOUTS = tuple(KERNEL_MODES)
# Layouts whose model selects its own detections: no NMS, best first (as the CPU decoders).
SELECTING_LAYOUTS = ("end2end", "rtdetr", "rtdetr-queries")
SELECTED_ROWS = 300


def output_shape(layout: str, input_width: int, input_height: int, num_classes: int,
                 rows: int = SELECTED_ROWS) -> tuple[int, int]:
    """The [cells, channels] a model of ``layout`` writes per frame ([channels, cells] for ``ultralytics``).
    YOLOX and Ultralytics heads predict on the same stride-8/16/32 grid; selecting models keep ``rows``."""
    if layout in ("end2end", "rtdetr"):
        return rows, 6
    if layout == "rtdetr-queries":
        return rows, 4 + num_classes
    cells = int(grid_cells(input_width, input_height, STRIDES)[0].shape[0])
    if layout == "ultralytics":
        return 4 + num_classes, cells
    return cells, (4 if layout == "ultralytics-transposed" else 5) + num_classes


class GpuYoloxDecoder:
    """Enqueue decode of one frame's float32 output in any GPU layout; finish (sort + NMS) on the host.
    Records and detections equal the CPU decoder's of the same layout (``streamd.yolox.decoders``)."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300,
                 host_capacity: int = DEFAULT_HOST_CAPACITY, device: int = 0,
                 selected_rows: int = SELECTED_ROWS) -> None:
        if layout not in GPU_LAYOUTS:
            raise ModelLayoutError(f"the GPU decoder handles layouts {GPU_LAYOUTS}, not '{layout}'")
        self.layout = layout
        self.mode = KERNEL_MODES[layout]
        self.num_classes = num_classes
        self.output_shape = output_shape(layout, input_width, input_height, num_classes, selected_rows)
        self.cells, self.channels = self.output_shape[::-1] if layout == "ultralytics" else self.output_shape
        self.score_threshold = np.float32(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = max_detections
        self.host_capacity = host_capacity
        if layout.startswith("rtdetr"):  # the kernels' table holds the input size normalised boxes scale to
            table = np.array([[input_width, input_height, input_width, input_height]], np.float32)
        else:
            grid, strides = grid_cells(input_width, input_height, STRIDES)
            table = np.ascontiguousarray(np.concatenate((grid, strides), axis=1), dtype=np.float32)
        self._grid = memory.DeviceBuffer.for_array(table.shape, np.float32)
        staging = memory.PinnedBuffer(table.shape, np.float32)
        try:
            staging.array[...] = table
            cudart, _, _ = runtime.bindings()  # a one-off synchronous upload at start-up
            runtime.check(cudart.cudaMemcpy(self._grid.ptr, staging.ptr, table.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy(grid)")
        finally:
            staging.free()
        module = nvrtc.load_module(DECODE_SOURCE, "yolox_decode", ("--fmad=false", "-std=c++17"), device)
        self._kernel = nvrtc.Kernel(module, "yolox_decode_f32", _ARG_TYPES)
        self._overflow: memory.PinnedBuffer | None = None
        # One packed launch per (output, area) pair, i.e. per pipeline slot.
        self._launches: dict[tuple[int, int], nvrtc.BoundLaunch] = {}

    @property
    def raw_output_nbytes(self) -> int:
        return self.cells * self.channels * 4

    @property
    def device_area_nbytes(self) -> int:
        return HEADER_BYTES + self.cells * RECORD_BYTES

    @property
    def copy_back_nbytes(self) -> int:
        """Bytes copied device -> host per frame (header + host_capacity records)."""
        return HEADER_BYTES + self.host_capacity * RECORD_BYTES

    def launch(self, output_ptr: int, area_ptr: int, stream_ptr: int) -> None:
        """Enqueue decode; the area's counter must already be zero (the letterbox kernel zeroes it)."""
        bound = self._launches.get((output_ptr, area_ptr))
        if bound is None:
            if len(self._launches) >= _MAX_BOUND_LAUNCHES:
                self._launches.clear()
            grid = ((self.cells + _BLOCK - 1) // _BLOCK, 1, 1)
            bound = self._launches[(output_ptr, area_ptr)] = self._kernel.bind(grid, (_BLOCK, 1, 1), (
                output_ptr, self.cells, self.channels, self._grid.ptr, self.mode,
                float(self.score_threshold), area_ptr, area_ptr + HEADER_BYTES, self.cells, self.num_classes))
        bound.launch(stream_ptr)

    def copy_back(self, area_ptr: int, host_area: memory.PinnedBuffer, stream_ptr: int) -> None:
        memory.copy_dtoh_async(host_area.ptr, area_ptr, self.copy_back_nbytes, stream_ptr)

    def new_host_area(self) -> memory.PinnedBuffer:
        return memory.PinnedBuffer((self.copy_back_nbytes // 4,), np.float32)

    def records(self, host_area: np.ndarray, area_ptr: int) -> np.ndarray:
        """(K, 8) candidate records of a completed frame, in cell order (the CPU decoder's order)."""
        count = int(host_area[:1].view(np.int32)[0])
        if count <= self.host_capacity:
            rows = host_area[HEADER_BYTES // 4:HEADER_BYTES // 4 + count * RECORD_FLOATS].reshape(count, RECORD_FLOATS)
        else:
            rows = self._fetch_overflow(area_ptr, count)
        if count <= 1:  # nothing to order; still a copy, since the pinned area is reused
            return rows.copy()
        return rows[rows[:, 6].argsort(kind="stable")]  # the method: no numpy dispatch wrapper

    def _fetch_overflow(self, area_ptr: int, count: int) -> np.ndarray:
        log.debug("%d candidates exceed the %d copied back; fetching the rest", count, self.host_capacity)
        if self._overflow is None:
            self._overflow = memory.PinnedBuffer((self.cells * RECORD_FLOATS,), np.float32)
        cudart, _, _ = runtime.bindings()  # rare path: a synchronous copy is fine
        nbytes = count * RECORD_BYTES
        runtime.check(cudart.cudaMemcpy(self._overflow.ptr, area_ptr + HEADER_BYTES, nbytes,
                                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy(overflow)")
        return self._overflow.array[:count * RECORD_FLOATS].reshape(count, RECORD_FLOATS)

    def finish(self, records: np.ndarray) -> Detections:
        """Class-aware NMS over the candidate records (network-input pixels).

        Same result as ``class_aware_nms`` on the record columns, with one gather of the kept records
        instead of separate copies of every column before and after the NMS.
        """
        count = records.shape[0]
        if count == 0:
            return Detections.empty()
        if self.layout in SELECTING_LAYOUTS:  # the model selected its boxes: by score, as the CPU decoders
            kept = records[np.argsort(-records[:, 4], kind="stable")[:self.max_detections]]
            return Detections(np.ascontiguousarray(kept[:, :4]), kept[:, 4].copy(), kept[:, 5].astype(np.int32))
        if count == 1 and self.max_detections >= 1 and records[0, 4] > 0.0:
            # One candidate survives NMS as is (OpenCV keeps scores above the 0 threshold it is given):
            # skip the batched NMS and its conversions.
            return Detections(records[:, :4].copy(), records[:, 4].copy(), records[:, 5].astype(np.int32))
        keep = class_aware_nms_indices(records[:, :4], records[:, 4], records[:, 5], self.nms_threshold,
                                       self.max_detections)
        kept = records[keep]
        return Detections(np.ascontiguousarray(kept[:, :4]), kept[:, 4].copy(), kept[:, 5].astype(np.int32))

    def close(self) -> None:
        self._grid.free()
        if self._overflow is not None:
            self._overflow.free()

"""Batched GPU letterbox: one kernel launch turns N frames of any sizes into one [N, 3, H, W] float32 input.

Each frame is an NV12 device surface (NVDEC; converted to BGR inside the kernel, bit-exact with
OpenCV's ``cvtColor(COLOR_YUV2BGR_NV12)``) or a packed uint8 BGR image already in device memory.
The geometry and arithmetic are the single-frame kernel's (``streamd.gpu.preprocess``), so a
frame letterboxed in a batch equals the same frame letterboxed alone, and the CPU ``Preprocessor``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamd.cuda import memory, nvrtc, stream
from streamd.gpu.kernels import BATCH_LETTERBOX_SOURCE
from streamd.gpu.preprocess import COMPILE_OPTIONS
from streamd.yolox.preprocess import Convention, Letterbox, convention_geometry

_BLOCK = (32, 8, 1)
_ARG_TYPES = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
              ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float,
              ctypes.c_int, ctypes.c_int)
# The kernel's FrameDesc, field for field (80 bytes, naturally aligned).
FRAME_DESC = np.dtype([("src", "<u8"), ("chroma", "<u8"), ("counter", "<u8"), ("scale_x", "<f8"),
                       ("scale_y", "<f8"), ("src_w", "<i4"), ("src_h", "<i4"), ("pitch", "<i4"),
                       ("chroma_pitch", "<i4"), ("resized_w", "<i4"), ("resized_h", "<i4"), ("pad_x", "<i4"),
                       ("pad_y", "<i4"), ("format", "<i4"), ("reserved", "<i4")])
FORMAT_BGR, FORMAT_NV12 = 0, 1
# Host descriptor tables in flight: the host fills one while the copy of the previous may still be queued.
_TABLES = 2


@dataclass(frozen=True)
class FrameSurface:
    """Where one frame's pixels are on the device, and how they are laid out."""

    format: int  # FORMAT_BGR or FORMAT_NV12
    ptr: int  # BGR rows, or the NV12 luma plane
    width: int
    height: int
    pitch: int  # bytes per row (BGR: >= 3 * width)
    chroma_ptr: int = 0
    chroma_pitch: int = 0

    @classmethod
    def bgr(cls, ptr: int, width: int, height: int, pitch: int = 0) -> FrameSurface:
        return cls(FORMAT_BGR, ptr, width, height, pitch or 3 * width)

    @classmethod
    def nv12(cls, luma_ptr: int, chroma_ptr: int, width: int, height: int, pitch: int, chroma_pitch: int = 0
             ) -> FrameSurface:
        return cls(FORMAT_NV12, luma_ptr, width, height, pitch, chroma_ptr, chroma_pitch or pitch)


class GpuBatchLetterbox:
    """Letterbox up to ``max_batch`` frames per launch into float32 NCHW. Drive it from one thread."""

    def __init__(self, convention: Convention, input_width: int, input_height: int, max_batch: int,
                 device: int = 0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.convention = convention
        self.input_width = input_width
        self.input_height = input_height
        self.max_batch = max_batch
        module = nvrtc.load_module(BATCH_LETTERBOX_SOURCE, "batch_letterbox", COMPILE_OPTIONS, device)
        self._kernel = nvrtc.Kernel(module, "batch_letterbox_f32", _ARG_TYPES)
        gain = [float(v) for v in convention.channel_gain]
        offset = [float(v) for v in convention.channel_offset]
        self._constant_args = (input_width, input_height, *gain, *offset, convention.pad_value,
                               int(convention.swap_rb))
        self._grid_xy = ((input_width + _BLOCK[0] - 1) // _BLOCK[0], (input_height + _BLOCK[1] - 1) // _BLOCK[1])
        self._geometry: dict[tuple[int, int], tuple[Letterbox, float, float]] = {}
        self._host_tables: list[memory.PinnedBuffer] = []
        self._copied: list[stream.Event] = []
        self._device_table: memory.DeviceBuffer | None = None
        try:
            for _ in range(_TABLES):
                self._host_tables.append(memory.PinnedBuffer((max_batch,), FRAME_DESC))
                self._copied.append(stream.Event(timing=False))
            self._device_table = memory.DeviceBuffer(max_batch * FRAME_DESC.itemsize)
        except Exception:
            self.close()
            raise
        self._next_table = 0
        self._recorded = [False] * _TABLES

    @property
    def output_nbytes_per_frame(self) -> int:
        return 3 * self.input_width * self.input_height * 4

    def geometry(self, frame_width: int, frame_height: int) -> Letterbox:
        return self._geometry_entry(frame_width, frame_height)[0]

    def _geometry_entry(self, frame_width: int, frame_height: int) -> tuple[Letterbox, float, float]:
        key = (frame_width, frame_height)
        entry = self._geometry.get(key)
        if entry is None:
            geometry = convention_geometry(self.convention, frame_width, frame_height, self.input_width,
                                           self.input_height)
            # OpenCV's resize maps with 1 / (dst / src), both in double: reproduce it to the bit.
            entry = (geometry, 1.0 / (geometry.resized_width / frame_width),
                     1.0 / (geometry.resized_height / frame_height))
            self._geometry[key] = entry
        return entry

    def launch(self, frames: Sequence[FrameSurface], output_ptr: int, stream_obj: stream.Stream,
               counter_ptrs: Sequence[int] | None = None) -> list[Letterbox]:
        """Enqueue the descriptor upload and one kernel launch on ``stream_obj``; returns each frame's geometry.

        ``counter_ptrs[i]`` (optional) is an int32 the kernel zeroes for frame i's decode.
        """
        count = len(frames)
        if not 0 < count <= self.max_batch:
            raise ValueError(f"a batch holds 1..{self.max_batch} frames, got {count}")
        index = self._next_table
        self._next_table = (index + 1) % _TABLES
        if self._recorded[index]:
            self._copied[index].synchronize()  # its previous upload has left pinned memory (long since, normally)
        rows = []
        geometries = []
        for i, frame in enumerate(frames):
            geometry, scale_x, scale_y = self._geometry_entry(frame.width, frame.height)
            geometries.append(geometry)
            rows.append((frame.ptr, frame.chroma_ptr, counter_ptrs[i] if counter_ptrs else 0, scale_x, scale_y,
                         frame.width, frame.height, frame.pitch, frame.chroma_pitch, geometry.resized_width,
                         geometry.resized_height, geometry.pad_x, geometry.pad_y, frame.format, 0))
        table = self._host_tables[index]
        table.array[:count] = rows
        memory.copy_htod_async(self._device_table.ptr, table.ptr, count * FRAME_DESC.itemsize, stream_obj.ptr)
        self._copied[index].record(stream_obj)
        self._recorded[index] = True
        self._kernel.launch((*self._grid_xy, count), _BLOCK, stream_obj.ptr,
                            (self._device_table.ptr, output_ptr, *self._constant_args))
        return geometries

    def close(self) -> None:
        """Free in reverse order; idempotent (the caller synchronises its stream first)."""
        if self._device_table is not None:
            self._device_table.free()
        for event in reversed(self._copied):
            event.close()
        for table in reversed(self._host_tables):
            table.free()

"""GPU letterbox: launches the NVRTC kernel that turns a uint8 BGR frame into the network input."""

from __future__ import annotations

import ctypes

import numpy as np

from streamd.cuda import nvrtc
from streamd.gpu.kernels import LETTERBOX_SOURCE
from streamd.yolox.preprocess import Convention, Letterbox, convention_geometry

_BLOCK = (32, 8, 1)
_ARG_TYPES = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
              ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
              ctypes.c_double, ctypes.c_double,
              ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float,
              ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
# No FMA contraction: gain * v + offset must round like the CPU's separate multiply and add.
COMPILE_OPTIONS = ("--fmad=false", "-std=c++17")
_MAX_BOUND_LAUNCHES = 64


class GpuLetterbox:
    """Letterbox kernel for one convention and network input size; output dtype float32 or float16.

    Not thread-safe (shared launch argument blocks); one per pipeline.
    """

    def __init__(self, convention: Convention, input_width: int, input_height: int,
                 dtype: np.dtype | type = np.float32, device: int = 0) -> None:
        self.convention = convention
        self.input_width = input_width
        self.input_height = input_height
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"GPU letterbox writes float32 or float16, not {self.dtype}")
        module = nvrtc.load_module(LETTERBOX_SOURCE, "letterbox", COMPILE_OPTIONS, device)
        name = "letterbox_f32" if self.dtype == np.float32 else "letterbox_f16"
        self._kernel = nvrtc.Kernel(module, name, _ARG_TYPES)
        self._gain = [float(v) for v in convention.channel_gain]
        self._offset = [float(v) for v in convention.channel_offset]
        self._grid = ((input_width + _BLOCK[0] - 1) // _BLOCK[0], (input_height + _BLOCK[1] - 1) // _BLOCK[1], 1)
        self._geometry_cache: dict[tuple[int, int], Letterbox] = {}
        # Packed launches by (frame, size, output, counter): a pipeline reuses one per slot, so the
        # 22 arguments are packed once instead of every frame.
        self._launches: dict[tuple[int, int, int, int, int], tuple[nvrtc.BoundLaunch, Letterbox]] = {}

    @property
    def output_nbytes(self) -> int:
        return 3 * self.input_width * self.input_height * self.dtype.itemsize

    def geometry(self, frame_width: int, frame_height: int) -> Letterbox:
        key = (frame_width, frame_height)
        geometry = self._geometry_cache.get(key)
        if geometry is None:
            geometry = convention_geometry(self.convention, frame_width, frame_height, self.input_width,
                                           self.input_height)
            self._geometry_cache[key] = geometry
        return geometry

    def launch(self, frame_ptr: int, frame_width: int, frame_height: int, output_ptr: int, stream_ptr: int,
               counter_ptr: int = 0) -> Letterbox:
        """Enqueue the kernel reading a packed HxWx3 uint8 frame at ``frame_ptr`` (device memory).

        ``counter_ptr`` (optional) is an int32 the kernel zeroes for the decode kernel that follows.
        """
        key = (frame_ptr, frame_width, frame_height, output_ptr, counter_ptr)
        bound = self._launches.get(key)
        if bound is None:
            bound = self._launches[key] = self._bind(*key)
        bound[0].launch(stream_ptr)
        return bound[1]

    def _bind(self, frame_ptr: int, frame_width: int, frame_height: int, output_ptr: int, counter_ptr: int
              ) -> tuple[nvrtc.BoundLaunch, Letterbox]:
        if len(self._launches) >= _MAX_BOUND_LAUNCHES:  # buffers reallocated many times: start over
            self._launches.clear()
        geometry = self.geometry(frame_width, frame_height)
        # OpenCV's resize maps with 1 / (dst / src), both in double: reproduce it to the bit.
        scale_x = 1.0 / (geometry.resized_width / frame_width)
        scale_y = 1.0 / (geometry.resized_height / frame_height)
        gain, offset = self._gain, self._offset
        bound = self._kernel.bind(self._grid, _BLOCK, (
            frame_ptr, frame_width, frame_height, frame_width * 3,
            output_ptr, self.input_width, self.input_height,
            geometry.resized_width, geometry.resized_height, geometry.pad_x, geometry.pad_y,
            scale_x, scale_y, gain[0], gain[1], gain[2], offset[0], offset[1], offset[2],
            self.convention.pad_value, int(self.convention.swap_rb), counter_ptr))
        return bound, geometry

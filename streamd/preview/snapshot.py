"""A small host copy of a frame's picture for the preview, made while the frame is still valid.

Host frames (``numpy`` BGR) that nobody reuses are kept by reference and resized on the encoder
thread; pooled host buffers are resized here, since the pool hands them out again once the frame is
released. NVDEC frames (``DeviceNV12``, in GPU memory) are downloaded already downscaled: a 2D copy
with the source pitch multiplied by the step reads every ``step``-th row of each plane, so only
``1/step`` of the picture crosses PCIe (a 1080p frame at step 3: 0.35 of 3.1 MB); the columns are
thinned on the host and NV12 is converted to BGR there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from streamd.sources.device_image import DeviceNV12

# (host destination, device source pointer, source pitch in bytes, bytes per row, rows): a 2D copy
# into a C-contiguous ``rows x bytes`` host array. The real one is cudaMemcpy2D device to host.
Copy2D = Callable[[np.ndarray, int, int, int, int], None]


def step_for(width: int, max_width: int) -> int:
    """The integer downscale step that brings ``width`` to at most ``max_width`` (1: keep it)."""
    return max(1, math.ceil(width / max_width)) if max_width > 0 else 1


def resized(image: np.ndarray, max_width: int) -> np.ndarray:
    """``image`` scaled to at most ``max_width`` wide, aspect kept (the same array when it fits)."""
    height, width = image.shape[:2]
    if max_width <= 0 or width <= max_width:
        return image
    new_height = max(2, round(height * max_width / width))
    # Linear, not area: INTER_AREA costs several times the JPEG encoding itself and would be most of a
    # viewer's cost. The boxes are drawn after the resize, so they stay sharp.
    return cv2.resize(image, (max_width, new_height), interpolation=cv2.INTER_LINEAR)


def host_copy(image: np.ndarray, max_width: int) -> np.ndarray:
    """A copy that stays valid after the frame's buffer is reused, downscaled first when wider."""
    small = resized(image, max_width)
    return small.copy() if small is image else small


def nv12_download(image: DeviceNV12, max_width: int, copy_2d: Copy2D | None = None) -> np.ndarray:
    """BGR host picture of an NV12 device frame, at most ``max_width`` wide, rows thinned on the GPU side."""
    copy_2d = copy_2d or cuda_copy_2d(image.device)
    step = step_for(image.width, max_width)
    out_height = (image.height // (2 * step)) * 2
    out_width = (image.width // (2 * step)) * 2
    if out_height < 2 or out_width < 2:
        raise ValueError(f"{image!r} is too small for a preview at step {step}")
    row_bytes = image.width & ~1  # whole luma rows; a chroma row holds width/2 (U, V) pairs
    luma = np.empty((out_height, row_bytes), np.uint8)
    chroma = np.empty((out_height // 2, row_bytes), np.uint8)
    # Output row i is source luma row i*step; output chroma row j covers output luma rows 2j, 2j+1,
    # i.e. source luma rows 2j*step..., whose chroma row is j*step: both planes at a pitch of step rows.
    copy_2d(luma, image.luma_ptr, image.pitch * step, row_bytes, out_height)
    copy_2d(chroma, image.chroma_ptr, image.chroma_pitch * step, row_bytes, out_height // 2)
    y = np.ascontiguousarray(luma[:, ::step][:, :out_width])
    uv = np.ascontiguousarray(chroma.reshape(out_height // 2, row_bytes // 2, 2)[:, ::step][:, :out_width // 2])
    return cv2.cvtColorTwoPlane(y, uv, cv2.COLOR_YUV2BGR_NV12)


def cuda_copy_2d(device: int) -> Copy2D:
    """cudaMemcpy2D device to host on ``device`` (synchronous: the frame is released right after).

    Called from the pipeline thread after the detector returned the frame's result, so every kernel
    that read the surface, and the decoder's copy into it before them, has finished."""
    from streamd.cuda import runtime  # noqa: PLC0415 - CUDA only where NVDEC frames exist

    def copy(dst: np.ndarray, src_ptr: int, src_pitch: int, row_bytes: int, rows: int) -> None:
        runtime.use_device(device)
        cudart, _, _ = runtime.bindings()
        runtime.check(cudart.cudaMemcpy2D(dst.ctypes.data, row_bytes, src_ptr, src_pitch, row_bytes, rows,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                      f"cudaMemcpy2D(preview NV12, {rows} rows x {row_bytes} bytes)")

    return copy


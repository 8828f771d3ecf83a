"""Zero-copy BatchGpuDetector: host frames in the capture's mapped pool are letterboxed in place, batch by batch.

``BatchGpuDetector`` uploads each host BGR frame into a device buffer before the batched letterbox; here a
frame that lies in mapped page-locked memory (the pool ``frame_allocator()`` hands the capture threads,
``streamd.gpu.zero_copy.MappedFrames``) is given to the kernel by its device address instead: no upload.
NVDEC frames are read in place as before, and a frame in ordinary memory is still staged and uploaded.
The batch's candidates come back with the one small copy per batch the batched decoder makes (headers and
first records of every frame). A frame's memory stays valid until its batch is harvested: the frame is
released only once its result is published.
"""

from __future__ import annotations

import numpy as np

from streamd.frame import Allocator
from streamd.gpu.batch_detector import BatchGpuDetector
from streamd.gpu.batch_preprocess import FrameSurface
from streamd.gpu.zero_copy import MappedFrames


class ZeroCopyBatchGpuDetector(BatchGpuDetector):
    """``BatchGpuDetector`` reading host frames of its mapped frame pool in place."""

    def __init__(self, *args, **kwargs) -> None:
        self.mapped_frames = MappedFrames(kwargs.get("device", 0))
        self.frames_in_place = 0  # host frames the kernel read where the capture left them
        self.frames_uploaded = 0  # host frames in ordinary memory: staged and uploaded as before
        super().__init__(*args, **kwargs)

    def frame_allocator(self) -> Allocator:
        return self.mapped_frames.allocator()

    def _surface(self, slot, index: int, image: object) -> FrameSurface:
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            device_ptr = self.mapped_frames.device_address(image)
            if device_ptr is not None:
                self.frames_in_place += 1
                return FrameSurface.bgr(device_ptr, image.shape[1], image.shape[0])
            self.frames_uploaded += 1
        return super()._surface(slot, index, image)

"""The file reader decodes into images it returned earlier only once nothing references them."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.config.schema import SourceConfig
from streamd.sources.readers import MAX_RECYCLED_BUFFERS, VideoFileReader
from tests.support import VTEST, require_shared


def test_frames_still_referenced_are_never_overwritten() -> None:
    require_shared(VTEST)
    reader = VideoFileReader(SourceConfig(id="cam", kind="file", url=str(VTEST)))
    reader.open()
    reference = cv2.VideoCapture(str(VTEST))
    held: list[tuple[np.ndarray, np.ndarray]] = []  # (image, its copy when read): three frames in flight
    view = view_copy = None
    try:
        for index in range(60):
            image, _ = reader.read()
            assert np.array_equal(image, reference.read()[1]), index  # the same pixels as a plain read
            held.append((image, image.copy()))
            if index == 5:  # a view keeps its frame's memory alive after the frame is gone
                view, view_copy = image[100:200], image[100:200].copy()
            if len(held) > 3:
                held.pop(0)
            del image
            for kept, copy in held:
                assert np.array_equal(kept, copy), index
            if view is not None:
                assert np.array_equal(view, view_copy), index
        # Frames were decoded into recycled memory, not a new image each time.
        assert 0 < len(reader._buffers) <= MAX_RECYCLED_BUFFERS
    finally:
        reader.close()
        reference.release()

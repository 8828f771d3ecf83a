"""Frame readers: the thing a capture thread pulls frames from, one class per kind of source.

A reader is used by one thread at a time: ``open()`` (raises SourceError), ``read()`` until it
returns None (end of stream or a failed read), ``close()`` (idempotent).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from abc import ABC, abstractmethod

import cv2
import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.log_throttle import LogThrottle
from streamd.sources.image_header import describe_pixels, image_size

log = logging.getLogger(__name__)

DEFAULT_STILL_FPS = 10.0
# pace = "native" on a file whose container gives no usable frame rate (none, or a made-up one such
# as the 25 fps FFmpeg gives a picture read as a video): this rate, as for images, never flat out.
DEFAULT_FILE_FPS = 10.0
# A rate of this or more is no real frame rate (FFmpeg reports 1000 for a timebase without one).
MAX_NATIVE_FPS = 1000.0
# A read that fails before the frame count a file's header announces is retried: FFmpeg skips a
# corrupt stretch one failed read at a time (tests/daemon/test_bad_input.py). Past this many in a row,
# or at a truncated file's cut, the file has ended.
MAX_CONSECUTIVE_FAILED_READS = 32


class FrameReader(ABC):
    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> tuple[np.ndarray, object | None] | None:
        """(HxWx3 uint8 BGR image, ground truth or None), or None at end of stream / on failure."""

    @property
    @abstractmethod
    def native_fps(self) -> float:
        """The source's own frame rate; 0 when unknown (live sources set their own pace)."""

    @abstractmethod
    def close(self) -> None: ...

    def rewind(self) -> bool:
        """Restart from the first frame (looping files); False when that failed."""
        return False

    def reopen(self) -> bool:
        """``close()`` then ``open()``: a rewind for readers that cannot seek reliably; False when the
        reopen failed (the capture loop then treats the source as ended)."""
        self.close()
        try:
            self.open()
        except SourceError:
            return False
        return True


def check_pixels(what: str, width: int, height: int, max_pixels: int, before_decoding: bool) -> None:
    """SourceError when a picture of ``width`` x ``height`` is over the source's ``max_pixels`` (0: no limit)."""
    if max_pixels and width * height > max_pixels:
        when = "refused before decoding" if before_decoding else "refused"
        raise SourceError(f"{what} is {describe_pixels(width, height)}, over max_pixels = {max_pixels}; {when} "
                          "(raise the source's max_pixels to take it)")


def check_image_header(path: str, max_pixels: int) -> bool:
    """Refuse an image file whose header says it is over ``max_pixels`` (SourceError); whether the
    file is an image this header check reads."""
    found = image_size(path)
    if found is None:
        return False
    image_format, width, height = found
    check_pixels(f"{image_format} image {path}", width, height, max_pixels, before_decoding=True)
    return True


def check_media_file(path: str) -> None:
    """SourceError unless ``path`` is a readable file: a clear reason instead of a decoder's guess
    (and OpenCV never tries to read a missing name as an image-sequence pattern)."""
    if not os.path.exists(path):
        raise SourceError(f"file {path} does not exist")
    if not os.path.isfile(path):
        raise SourceError(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"file {path} is not readable by this user")


# Decoded images a file reader keeps to decode into again: the slot, the frames in the workers and
# those waiting to be published in order are out at once, with room to spare.
MAX_RECYCLED_BUFFERS = 8
_UNREFERENCED = 2  # sys.getrefcount of an array held only by a list, read through an index


class VideoFileReader(FrameReader):
    """A video file through OpenCV (FFmpeg backend)."""

    def __init__(self, config: SourceConfig) -> None:
        self._source_id = config.id
        self._path = config.url
        self._decode_threads = config.decode_threads
        self._max_pixels = config.max_pixels
        self._capture: cv2.VideoCapture | None = None
        self._fps = 0.0
        self._announced_frames = 0  # the header's frame count (exact for MP4, an estimate for some)
        self._short_end_logged = False  # a looping truncated file says so once, not every loop
        self._frames_since_open = 0
        self._corrupt_log = LogThrottle()  # a looping corrupt file: one line, then a summary a minute
        self._buffers: list[np.ndarray] = []  # images this reader decoded, decoded into again once unused
        # A picture given as a video (a PNG named .avi): FFmpeg reads it as one frame at a made-up 25 fps.
        # Its rate counts as unknown, and a loop repeats the decoded picture instead of decoding it again.
        self._picture = False
        self._picture_frame: np.ndarray | None = None
        self._repeat_picture = False

    def open(self) -> None:
        check_media_file(self._path)
        self._picture = check_image_header(self._path, self._max_pixels)
        self._picture_frame, self._repeat_picture = None, False
        self._frames_since_open = 0
        params = [cv2.CAP_PROP_N_THREADS, self._decode_threads] if self._decode_threads else []
        capture = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video file {self._path} (not a video OpenCV/FFmpeg can read?)")
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(f"video {self._path}", width, height, self._max_pixels, before_decoding=True)
        except SourceError:
            capture.release()
            raise
        self._capture = capture
        self._fps = 0.0 if self._picture else float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._announced_frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._repeat_picture and self._picture_frame is not None:
            self._repeat_picture = False
            return self._picture_frame, None
        if self._capture is None:
            return None
        failed = 0
        while True:
            buffer = self._unused_buffer()
            ok, image = self._capture.read(buffer)
            if ok and image is not None:
                self._keep_buffer(image, buffer)
                self._frames_since_open += 1
                if failed:
                    self._log_corrupt_stretch(failed)
                if self._picture:
                    self._picture_frame = image
                return image, None
            position = self._position()
            if position >= self._announced_frames:
                return None  # the end (or a file whose header gives no count)
            failed += 1
            if failed >= MAX_CONSECUTIVE_FAILED_READS:
                # Not one frame since the open: the capture loop reports a failed open instead.
                if not self._short_end_logged and self._frames_since_open:
                    self._short_end_logged = True
                    log.warning("source %s: %s ends at frame %d of the %d its header announces (truncated or "
                                "corrupt); treated as its end", self._source_id, self._path, position,
                                self._announced_frames)
                return None

    def _log_corrupt_stretch(self, frames: int) -> None:
        """The first corrupt stretch at WARNING; after it one summary a minute (a looping file meets the
        same stretches on every pass)."""
        due = self._corrupt_log.occurred(frames)
        if due is None:
            return
        stretches, skipped = due
        if self._corrupt_log.total == 1:
            log.warning("source %s: %d unreadable frame(s) at frame %d of %s (corrupt data), skipped; reading on",
                        self._source_id, frames, self._position() - 1, self._path)
        else:
            log.warning("source %s: %d more corrupt stretch(es) in %s (%d unreadable frame(s) in all) since the "
                        "last line, skipped; reading on (%d in all; summarised at most every %g s)", self._source_id,
                        stretches, self._path, skipped, self._corrupt_log.total, self._corrupt_log.interval_seconds)

    def _unused_buffer(self) -> np.ndarray | None:
        """An image this reader returned earlier that nothing references any more (its frame was
        published or dropped), to decode the next frame into; None: OpenCV allocates a new one.

        Decoding into memory already mapped saves what a fresh image costs in page faults, about a
        fifth of the CPU a frame's read takes (docs/results.md). A reference count of 2 (this list's
        and the call's) means no Frame, view or detector still holds the array, and none can get it
        again, so overwriting it is safe."""
        buffers = self._buffers
        for index in range(len(buffers)):
            if sys.getrefcount(buffers[index]) == _UNREFERENCED:
                return buffers[index]
        return None

    def _keep_buffer(self, image: np.ndarray, buffer: np.ndarray | None) -> None:
        if image is buffer:
            return
        if buffer is not None:  # a new frame size: OpenCV allocated instead; forget the old size
            self._buffers = [b for b in self._buffers if b.shape == image.shape]
        if len(self._buffers) < MAX_RECYCLED_BUFFERS:
            self._buffers.append(image)

    def _position(self) -> int:
        return int(self._capture.get(cv2.CAP_PROP_POS_FRAMES)) if self._capture is not None else 0

    @property
    def native_fps(self) -> float:
        return self._fps

    def rewind(self) -> bool:
        if self._picture and self._picture_frame is not None:
            self._repeat_picture = True  # the same picture again, not decoded again
            return True
        return self.reopen()  # more reliable than seeking to 0 across codecs/containers

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class StillImageReader(FrameReader):
    """One image file, delivered once (or repeated at ``fps`` when ``loop``)."""

    def __init__(self, config: SourceConfig) -> None:
        self._path = config.url
        self._fps = config.fps or DEFAULT_STILL_FPS
        self._max_pixels = config.max_pixels
        self._image: np.ndarray | None = None
        self._delivered = False

    def open(self) -> None:
        check_media_file(self._path)
        checked = check_image_header(self._path, self._max_pixels)  # before decoding, where the header says
        image = cv2.imread(self._path, cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {self._path} (not an image OpenCV can decode)")
        if not checked:  # a format whose header is not read here (TIFF...): checked once decoded
            check_pixels(f"image {self._path}", image.shape[1], image.shape[0], self._max_pixels,
                         before_decoding=False)
        self._image = image
        self._delivered = False

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._image is None or self._delivered:
            return None
        self._delivered = True
        return self._image, None

    @property
    def native_fps(self) -> float:
        return self._fps

    def rewind(self) -> bool:
        self._delivered = False
        return self._image is not None

    def close(self) -> None:
        self._image = None


def redact(url: str) -> str:
    """The URL without credentials, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


READERS: dict[str, str] = {
    "file": "streamd.sources.readers:VideoFileReader",
    "image": "streamd.sources.readers:StillImageReader",
    "rtsp": "streamd.sources.rtsp:RtspReader",
    "synthetic": "streamd.sources.synthetic:SyntheticReader",
}


# Hardware decoders for file and rtsp sources (config `decoder`); "opencv" uses READERS above.
DECODER_READERS: dict[str, str] = {
    "nvdec": "streamd.sources.nvdec:NvdecReader",
    "jetson": "streamd.sources.gstreamer:GStreamerReader",
}


def make_reader(config: SourceConfig) -> FrameReader:
    target = READERS[config.kind]
    decoder = config.decoder
    if decoder == "auto" and config.kind in ("file", "rtsp"):
        from streamd.sources.gst_elements import auto_decoder  # noqa: PLC0415 - imports GStreamer where present

        decoder = auto_decoder()
    if config.kind in ("file", "rtsp") and decoder in DECODER_READERS:
        target = DECODER_READERS[decoder]
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)

"""RTSP through OpenCV's FFmpeg backend: transport choice, bounded open/read timeouts, and a
quick RTSP probe before each open that keeps dead cameras out of OpenCV's global open lock.

The reader itself blocks (open up to ``open_timeout_seconds``, read up to ``read_timeout_seconds``,
sometimes longer); the supervisor runs it in a disposable thread and watches frame arrival.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import cv2
import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.readers import FrameReader, check_pixels, redact

OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# FFmpeg's default analysis (5 s) made each open take ~2.9 s on a 10 fps test stream: that delay
# lands on every reconnect, and the frames read meanwhile come out as a stale burst. Half a second
# is enough for H.264 whose SPS/PPS are in the SDP or in band (open then takes ~0.1-0.6 s).
ANALYZE_DURATION_US = 500_000
DEFAULT_RTSP_PORT = 554


def _parse_options(text: str) -> dict[str, str]:
    """OpenCV's format: ``key;value|key;value``."""
    pairs = (item.split(";", 1) for item in text.split("|") if ";" in item)
    return {key: value for key, value in pairs}


def capture_options(transport: str, user_options: str | None = None) -> str:
    """The options string for one open: the user's own env options, ours on top."""
    options = _parse_options(user_options or "")
    options["rtsp_transport"] = transport
    options.setdefault("analyzeduration", str(ANALYZE_DURATION_US))
    return "|".join(f"{key};{value}" for key, value in options.items())


class _OptionsGate:
    """Serialises the process-wide ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` between concurrent opens.

    OpenCV reads the variable inside the VideoCapture constructor, so it must not change while an
    open is in flight. Opens that need the same value (the usual case: every camera on TCP) run
    concurrently; one that needs another value waits until those in flight have returned, which
    their open timeout bounds.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._value: str | None = None
        self._in_flight = 0
        self._user_options = os.environ.get(OPTIONS_ENV)

    @contextmanager
    def options_for(self, transport: str) -> Iterator[None]:
        value = capture_options(transport, self._user_options)
        with self._condition:
            while self._in_flight and self._value != value:
                self._condition.wait()
            if self._value != value:
                os.environ[OPTIONS_ENV] = value
                self._value = value
            self._in_flight += 1
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()


_GATE = _OptionsGate()


def probe_server(url: str, timeout_seconds: float) -> None:
    """Ask the server for OPTIONS before OpenCV opens the stream; raise SourceError if it won't answer.

    OpenCV's FFmpeg backend holds one process-wide lock for the whole of every open, so a camera that
    accepts the connection and then says nothing would hold up every other camera's (re)connect for
    its full open timeout, on every retry. This probe fails such a camera here, outside that lock,
    and names the reason (refused, unreachable, silent) that OpenCV does not report.
    """
    parts = urlsplit(url)
    if parts.scheme != "rtsp":
        return  # rtsps: TLS is FFmpeg's business; no probe
    try:
        port = parts.port or DEFAULT_RTSP_PORT
    except ValueError as error:
        raise SourceError(f"invalid port in {redact(url)}") from error
    host = parts.hostname or ""
    target = f"rtsp://{host}:{port}{parts.path or '/'}"
    request = f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: streamd\r\n\r\n".encode()
    deadline = time.monotonic() + timeout_seconds  # connect and answer share the one budget
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds) as connection:
            connection.settimeout(max(0.01, deadline - time.monotonic()))
            connection.sendall(request)
            answer = connection.recv(64)
    except ConnectionRefusedError as error:
        raise SourceError(f"connection refused by {host}:{port}") from error
    except TimeoutError as error:
        raise SourceError(f"no answer from {host}:{port} within {timeout_seconds:g} s") from error
    except OSError as error:
        raise SourceError(f"cannot reach {host}:{port} ({error.strerror or error})") from error
    if not answer.startswith(b"RTSP/"):
        raise SourceError(f"{host}:{port} does not speak RTSP (answered {answer[:16]!r})")


class RtspReader(FrameReader):
    """One RTSP connection. ``open()`` and ``read()`` block, bounded by the configured timeouts."""

    CAPTURE_PARAMS: tuple[int, ...] = ()  # more (property, value) pairs for VideoCapture

    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        config = self._config
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_seconds * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_seconds * 1000), *self.CAPTURE_PARAMS]
        try:
            probe_server(config.url, config.open_timeout_seconds)
        except SourceError as error:
            raise SourceError(f"cannot open RTSP stream {redact(config.url)} ({config.transport}): {error}") from None
        started = time.monotonic()
        try:
            with _GATE.options_for(config.transport):
                capture = cv2.VideoCapture(config.url, cv2.CAP_FFMPEG, params)
        except cv2.error as error:
            raise SourceError(f"cannot open RTSP stream {redact(config.url)}: {error}") from error
        if not capture.isOpened():
            capture.release()
            if time.monotonic() - started >= 0.9 * config.open_timeout_seconds:
                reason = f"the server answers but the stream did not open within {config.open_timeout_seconds:g} s"
            else:
                reason = "the server refused the stream (wrong path or credentials?) or sent no usable video"
            raise SourceError(f"cannot open RTSP stream {redact(config.url)} ({config.transport}): {reason}")
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(f"RTSP stream {redact(config.url)}", width, height, config.max_pixels, before_decoding=False)
        except SourceError:
            capture.release()
            raise
        self._capture = capture

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._capture is None:
            return None
        try:
            ok, image = self._capture.read()
        except cv2.error:
            return None
        return (image, None) if ok and image is not None else None

    @property
    def native_fps(self) -> float:
        return 0.0  # a live camera paces itself

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class RtspPacketReader(RtspReader):
    """The same connection, demuxed only: ``read()`` returns each compressed video packet (1xN uint8,
    H.264/H.265 in Annex-B with start codes) instead of a decoded image; for a hardware decoder (NVDEC)."""

    CAPTURE_PARAMS = (cv2.CAP_PROP_FORMAT, -1)

    @property
    def fourcc(self) -> str:
        """The stream's codec as OpenCV names it (``h264``, ``hevc``...); empty before ``open()``."""
        if self._capture is None:
            return ""
        return int(self._capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").strip("\0 ")

    @property
    def size(self) -> tuple[int, int]:
        if self._capture is None:
            return 0, 0
        return int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

"""GStreamer capture (``decoder = "jetson"``): hardware H.264 decode on a Jetson, the same pipeline in software
elsewhere.

A file or rtsp source with ``decoder = "jetson"`` is read by :class:`GStreamerReader`, a ``FrameReader``
like the OpenCV and NVDEC readers (registered in ``streamd.sources.readers.DECODER_READERS``), so the
capture loop, the RTSP supervisor with its stall watchdog, backoff and the latest-frame slot apply
unchanged. The pipelines, through PyGObject (``pip install 'streamd[gstreamer]'``, or JetPack's
``python3-gi`` in a venv made with ``--system-site-packages``)::

    rtsp:  rtspsrc name=src location=URL protocols=tcp|udp latency=100 tcp-timeout=OPEN_TIMEOUT
             ! application/x-rtp,media=video,encoding-name=H264 ! rtph264depay ! h264parse
             ! DECODE ! CONVERT ! video/x-raw,format=BGR
             ! appsink name=sink max-buffers=1 drop=true sync=false
    file:  filesrc name=src location=PATH ! parsebin ! h264parse ! DECODE ! CONVERT
             ! video/x-raw,format=BGR ! appsink name=sink max-buffers=4 drop=false sync=false

    Jetson (nvv4l2decoder present):  DECODE = nvv4l2decoder
                                     CONVERT = nvvidconv ! video/x-raw,format=BGRx ! videoconvert
    elsewhere (software):            DECODE = avdec_h264          CONVERT = videoconvert

``nvv4l2decoder`` decodes on the Jetson's NVDEC engine into NVMM buffers; ``nvvidconv`` (the VIC engine)
converts them to BGRx in system memory, which ``videoconvert`` packs to BGR on the CPU (``nvvidconv``
does not write 3-byte pixels). H.264 only; an H.265 camera needs ``rtph265depay ! h265parse`` (and
``avdec_h265``): not wired. The caps filter after ``rtspsrc`` links the camera's H.264 video stream
only (an audio stream stays unlinked, which rtspsrc tolerates); a stream that is not H.264 fails the open
with a message saying so. The software elements run in CI against the test RTSP server; the NVIDIA
elements have not run (no Jetson here).

Blocking and timeouts follow the OpenCV RTSP reader's contract: an RTSP probe first (refused,
unreachable, silent and non-RTSP servers fail fast with a reason), ``open()`` returns once the first
frame is decoded or fails within ``open_timeout_seconds``, ``read()`` returns a frame, or None at the
end of the stream, on a pipeline error (a killed server: within ~0.1 s) or when no frame came for
``read_timeout_seconds`` plus :data:`READ_GRACE_SECONDS`. That grace keeps a frozen camera reported by
the supervisor's watchdog as ``stalled`` (at ``stall_timeout_seconds``), the reason a person can act
on, rather than as a failed read, when both timeouts are equal (the tests use 2 s for both).
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.gst_elements import (
    HARDWARE_ELEMENTS,
    INSTALL_HINT,
    SOFTWARE_ELEMENTS,
    available_elements,
    hardware_decode_available,
    import_gst,
    is_tegra,
)
from streamd.sources.readers import FrameReader, check_image_header, check_media_file, check_pixels, redact
from streamd.sources.rtsp import probe_server

log = logging.getLogger(__name__)

# The jitter buffer of rtspsrc; its default (2000 ms) would add two seconds to every frame's age. 100 ms
# absorbs reordering on UDP and costs a live camera 100 ms of latency.
RTSP_LATENCY_MS = 100
# How long a read may wait past read_timeout_seconds (see the module docstring).
READ_GRACE_SECONDS = 0.5
# RTSP statuses that mean "this URL is wrong for this server" (a debug line also holds source line numbers
# such as gstrtspsrc.c(6401), so the codes are matched in their parentheses).
_REFUSED = re.compile(r"\((401|403|404)\)|Not Found|Unauthorized|Forbidden")
# Granularity of waits: a pipeline error (server gone) is noticed within this long.
PULL_SLICE_SECONDS = 0.1


def pipeline_description(config: SourceConfig, hardware: bool) -> str:
    """The gst-launch description for a source (``location`` is set on element ``src`` afterwards, so a URL
    with credentials or quotes never goes through the parser)."""
    elements = HARDWARE_ELEMENTS if hardware else SOFTWARE_ELEMENTS
    decode = f"{elements['decode']} ! {elements['convert']} ! video/x-raw,format=BGR"
    if config.kind == "rtsp":
        tcp_timeout_us = int(config.open_timeout_seconds * 1e6)
        return (f"rtspsrc name=src protocols={config.transport} latency={RTSP_LATENCY_MS} "
                f"tcp-timeout={tcp_timeout_us} ! application/x-rtp,media=video,encoding-name=H264 ! rtph264depay "
                f"! h264parse ! {decode} "
                "! appsink name=sink max-buffers=1 drop=true sync=false")
    if config.kind == "file":
        # A file is read as fast as the capture takes frames (it paces itself): never drop.
        return (f"filesrc name=src ! parsebin ! h264parse ! {decode} "
                "! appsink name=sink max-buffers=4 drop=false sync=false")
    raise SourceError(f"source {config.id}: decoder 'jetson' reads file and rtsp sources, not {config.kind}")


class GStreamerReader(FrameReader):
    """One GStreamer pipeline; ``read()`` returns ``(HxWx3 uint8 BGR, None)``."""

    def __init__(self, config: SourceConfig, hardware: bool | None = None) -> None:
        self._config = config
        self._hardware = hardware
        self._pipeline = None
        self._sink = None
        self._bus = None
        self._first: np.ndarray | None = None
        self._fps = 0.0
        self.error: str | None = None

    def _where(self) -> str:
        return f"{redact(self._config.url)} ({self._config.transport})" if self._config.kind == "rtsp" \
            else self._config.url

    def open(self) -> None:
        gst, _ = import_gst()
        config = self._config
        if config.kind == "rtsp":
            try:
                probe_server(config.url, config.open_timeout_seconds)
            except SourceError as error:
                raise SourceError(f"cannot open RTSP stream {self._where()}: {error}") from None
        else:
            check_media_file(config.url)
            check_image_header(config.url, config.max_pixels)  # a picture given as a video: before decoding it
        hardware = hardware_decode_available() if self._hardware is None else self._hardware
        description = pipeline_description(config, hardware)
        try:
            pipeline = gst.parse_launch(description)
        except Exception as error:  # GLib.Error: an element is not installed
            raise SourceError(f"cannot build the GStreamer pipeline for {self._where()} ({error}); "
                              f"{INSTALL_HINT}") from error
        pipeline.get_by_name("src").set_property("location", config.url)
        self._pipeline = pipeline
        self._sink = pipeline.get_by_name("sink")
        self._bus = pipeline.get_bus()
        log.debug("source %s: %s pipeline: %s", config.id, "hardware" if hardware else "software", description)
        if pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            reason = self._bus_error() or "the pipeline would not start"
            self.close()
            raise SourceError(f"cannot open {self._where()} with GStreamer: {reason}")
        image = self._pull(config.open_timeout_seconds)
        if image is None:
            reason = self.error or "no frame"
            self.close()
            raise SourceError(f"cannot open {'RTSP stream ' if config.kind == 'rtsp' else ''}{self._where()}: "
                              f"{reason}")
        try:  # the caps give the size only with the first decoded frame
            check_pixels(self._where(), image.shape[1], image.shape[0], config.max_pixels, before_decoding=False)
        except SourceError:
            self.close()
            raise
        self._first = image

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image, None
        if self._sink is None:
            return None
        image = self._pull(self._config.read_timeout_seconds + READ_GRACE_SECONDS)
        return (image, None) if image is not None else None

    @property
    def native_fps(self) -> float:
        return self._fps if self._config.kind == "file" else 0.0  # a live camera paces itself

    def rewind(self) -> bool:
        return self.reopen()

    def close(self) -> None:
        """Stop the pipeline (joins its streaming threads, closes its sockets); idempotent."""
        pipeline, self._pipeline = self._pipeline, None
        self._sink, self._bus, self._first = None, None, None
        if pipeline is not None:
            gst, _ = import_gst()
            pipeline.set_state(gst.State.NULL)

    # -- internals --------------------------------------------------------------------------------

    def _pull(self, timeout_seconds: float) -> np.ndarray | None:
        """The next decoded frame, or None at the end of the stream, on a pipeline error or after the timeout."""
        gst, _ = import_gst()
        deadline = time.monotonic() + timeout_seconds
        while True:
            left = deadline - time.monotonic()
            sample = self._sink.try_pull_sample(int(max(0.0, min(left, PULL_SLICE_SECONDS)) * gst.SECOND))
            if sample is not None:
                return self._to_image(sample)
            error = self._bus_error()
            if error is not None:
                self.error = error
                return None
            if self._sink.is_eos():
                self.error = "end of stream"
                return None
            if left <= 0:
                self.error = f"no frame within {timeout_seconds:g} s"
                return None

    def _bus_error(self) -> str | None:
        gst, _ = import_gst()
        message = self._bus.pop_filtered(gst.MessageType.ERROR) if self._bus is not None else None
        if message is None:
            return None
        error, debug = message.parse_error()
        text = f"{error.message}" + (f" ({debug.splitlines()[-1]})" if debug else "")
        if "not-linked" in (debug or "") or "not-negotiated" in (debug or ""):
            return (f"the video is not H.264, the one codec these pipelines decode (H.265 and others: decoder "
                    f"= \"opencv\"): {redact_text(text)}")
        if _REFUSED.search(f"{error.message} {debug or ''}"):  # rtspsrc quotes the RTSP status line
            return f"the server refused the stream (wrong path or credentials?): {redact_text(text)}"
        return f"GStreamer error from {message.src.get_name()}: {redact_text(text)}"

    def _to_image(self, sample) -> np.ndarray:
        buffer = sample.get_buffer()
        structure = sample.get_caps().get_structure(0)
        width, height = int(structure.get_value("width")), int(structure.get_value("height"))
        if not self._fps:
            ok, numerator, denominator = structure.get_fraction("framerate")
            self._fps = numerator / denominator if ok and denominator else 0.0
        data = buffer.extract_dup(0, buffer.get_size())
        stride = len(data) // height  # GStreamer pads BGR rows to 4 bytes
        rows = np.frombuffer(data, np.uint8, count=stride * height).reshape(height, stride)
        return rows[:, :width * 3].reshape(height, width, 3).copy()  # writable, owned by the frame


def redact_text(text: str) -> str:
    """Credentials out of a GStreamer message that quotes the URL."""
    words = [redact(word) if "://" in word and "@" in word else word for word in text.split(" ")]
    return " ".join(words)


def preflight(config: SourceConfig) -> None:
    """Start-up check for a 'jetson' source: GStreamer imports and has the pipeline's elements."""
    import_gst()
    elements = available_elements()
    hardware = bool(elements.get("nvv4l2decoder") and elements.get("nvvidconv"))
    chosen = HARDWARE_ELEMENTS if hardware else SOFTWARE_ELEMENTS
    needed = ["appsink", "videoconvert", "h264parse", chosen["decode"],
              *(["rtspsrc", "rtph264depay"] if config.kind == "rtsp" else ["filesrc", "parsebin"])]
    missing = [name for name in needed if not elements.get(name)]
    if missing:
        raise SourceError(f"source {config.id}: decoder 'jetson' needs GStreamer elements {missing}; {INSTALL_HINT}")
    if is_tegra() and not hardware:
        log.warning("source %s: this is a Jetson but nvv4l2decoder/nvvidconv are missing: decoding in software "
                    "(avdec_h264)", config.id)


def describe() -> dict:
    """For `streamd doctor`: what GStreamer capture would use here."""
    try:
        gst, _ = import_gst()
    except SourceError as error:
        return {"available": False, "reason": str(error)}
    elements = available_elements()
    hardware = bool(elements.get("nvv4l2decoder") and elements.get("nvvidconv"))
    return {"available": True, "version": gst.version_string(), "tegra": is_tegra(),
            "decode": (HARDWARE_ELEMENTS if hardware else SOFTWARE_ELEMENTS)["decode"],
            "elements": elements}

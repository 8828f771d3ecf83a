"""NVDEC capture: file and RTSP sources demuxed and decoded by PyNvVideoCodec, frames kept on the GPU.

``decoder = "nvdec"`` on a file or rtsp source makes ``make_reader`` build an :class:`NvdecReader`
instead of the OpenCV reader, behind the same ``FrameReader`` interface, so the capture loop,
the RTSP supervisor and stall watchdog, backoff and the latest-frame slot apply unchanged. What a
frame carries is a :class:`~streamd.sources.device_image.DeviceNV12`: no pixel ever goes to the host.

Decoded surfaces: PyNvVideoCodec's ``Decode`` returns frames in the decoder's own buffers, which
later ``Decode`` calls overwrite (its documentation; only the locked-frame API keeps them). So each
picture is copied device to device (two ``cudaMemcpy2DAsync``, one per plane, on the decoder's
stream, then a stream synchronise) into a buffer of this reader's :class:`SurfacePool`, which the
frame gives back when it is superseded in the slot, dropped, or published. A 1080p NV12 copy is
3.1 MB: a few microseconds of device time.

Resolution changes mid-stream: a new sequence no larger than the decoder's maximum is reconfigured
in place (``cuvidReconfigureDecoder``) and keeps the first sequence's output size, NVDEC scaling the
pictures into it (1080p then 720p H.264 comes out 1920x1080 throughout, as OpenCV's FFmpeg reader
does; tests/gpu/test_nvdec.py). A sequence larger than the maximum makes ``Decode`` fail; the decoder
is then re-created at the new size and the packet decoded again (no test covers this case). Surfaces
of a size no longer decoded are freed as their frames are released.

RTSP: ``rtsp://`` is demuxed by OpenCV's FFmpeg, not PyNvVideoCodec's: PyNvVideoCodec 2.2.4's
``CreateDemuxer(filename="rtsp://...")`` crashes the process (SIGSEGV after the RTSP PLAY, on a stream
its own bundled libavformat reads without fault), and it takes no FFmpeg options (no transport, no
timeout). So an nvdec RTSP source opens exactly like an OpenCV one (``RtspPacketReader``: the
OPTIONS probe, ``transport``, the open and read timeouts) with ``CAP_PROP_FORMAT = -1``, which returns
each compressed packet (Annex-B) instead of an image; each packet goes to NVDEC as a ``PacketData``
pointing at it. A server that dies or freezes ends the read on the read timeout like OpenCV's, and the
supervisor reconnects.

The decoders behind this reader are a small interface (:class:`PictureDecoder`): PyNvVideoCodec
here; a Jetson decoder (GStreamer ``nvv4l2decoder``, NVMM buffers) would be another implementation
registered in ``DECODERS`` (not written: no Jetson to test it on).
"""

from __future__ import annotations

import importlib
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.log_throttle import LogThrottle
from streamd.sources.device_image import DeviceNV12
from streamd.sources.readers import FrameReader, check_pixels, redact

log = logging.getLogger(__name__)

# Slot (the newest picture and the one before) + a source's frames in the two batches BatchGpuDetector
# keeps in flight (two each after a late batch) + pictures of one Decode call + headroom. Allocated as
# needed; past it a decoded picture is dropped (counted), never overwritten. 1080p NV12: 3.1 MB each.
DEFAULT_POOL_SURFACES = 10
# A decoder is created for at least this size, so a stream that grows up to it mid-stream is
# reconfigured in place instead of re-created (PyNvVideoCodec's maxwidth/maxheight).
DEFAULT_MAX_WIDTH, DEFAULT_MAX_HEIGHT = 1920, 1088
INSTALL_HINT = "install it with: pip install 'streamd[nvdec]' (PyNvVideoCodec >= 2.2)"
# OpenCV's codec names (CAP_PROP_FOURCC of an RTSP stream) -> PyNvVideoCodec's cudaVideoCodec member.
RTSP_CODECS = {"h264": "H264", "avc1": "H264", "hevc": "HEVC", "hev1": "HEVC", "hvc1": "HEVC", "h265": "HEVC"}


def is_rtsp(url: str) -> bool:
    return url.lower().startswith(("rtsp://", "rtsps://"))


def import_pynvvideocodec():
    try:
        return importlib.import_module("PyNvVideoCodec")
    except ImportError as error:
        raise SourceError(f"decoder 'nvdec' needs PyNvVideoCodec, which does not import ({error}); "
                          f"{INSTALL_HINT}, or set decoder = \"opencv\"") from error


class SurfacePool:
    """Device NV12 buffers of one reader, leased per frame, returned by ``DeviceNV12.release``.

    Thread-safe: the capture thread leases, the pipeline releases. Buffers of a size no longer
    decoded (a resolution change) are freed as they come back. ``close()`` frees idle buffers at
    once and leased ones when they return.
    """

    def __init__(self, device: int = 0, max_surfaces: int = DEFAULT_POOL_SURFACES) -> None:
        self.device = device
        self.max_surfaces = max_surfaces
        self._lock = threading.Lock()
        self._free: dict[tuple[int, int], list[object]] = {}
        self._size: tuple[int, int] | None = None
        self._count = 0
        self._closed = False
        self.leased = 0
        self.released = 0
        self.allocated = 0
        self.exhausted = 0

    def lease(self, width: int, height: int) -> DeviceNV12 | None:
        """A packed NV12 surface (pitch = width) of this size, or None when every buffer is out."""
        from streamd.cuda import memory  # noqa: PLC0415 - the CUDA layer only where NVDEC runs

        key = (width, height)
        with self._lock:
            if self._closed:
                return None
            if key != self._size:
                self._drop_idle_locked()
                self._size = key
            free = self._free.setdefault(key, [])
            if free:
                buffer = free.pop()
            elif self._count < self.max_surfaces:
                buffer = memory.DeviceBuffer(width * height + width * ((height + 1) // 2))
                self._count += 1
                self.allocated += 1
            else:
                self.exhausted += 1
                return None
            self.leased += 1
        return DeviceNV12(buffer.ptr, buffer.ptr + width * height, width, height, width, width, self.device,
                          release=lambda: self._give_back(key, buffer))

    def _give_back(self, key: tuple[int, int], buffer) -> None:
        with self._lock:
            self.leased -= 1
            self.released += 1
            if self._closed or key != self._size:
                self._count -= 1
                buffer.free()
                return
            self._free.setdefault(key, []).append(buffer)

    def _drop_idle_locked(self) -> None:
        for buffers in self._free.values():
            for buffer in buffers:
                buffer.free()
                self._count -= 1
        self._free.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_idle_locked()


class PictureDecoder(ABC):
    """Compressed stream in, device NV12 pictures out: what ``NvdecReader`` needs of a hardware decoder."""

    @abstractmethod
    def open(self) -> None:
        """Open the stream and the decoder; SourceError with a reason a person can act on."""

    @abstractmethod
    def pictures(self) -> Iterator[DeviceNV12 | None]:
        """Decoded pictures in display order (each in a pooled surface the caller releases); None for a
        picture dropped because the pool was exhausted. Ends at the end of the stream; SourceError on
        a failed demux or decode."""

    @property
    @abstractmethod
    def fps(self) -> float: ...

    @abstractmethod
    def close(self) -> None: ...


class PyNvVideoCodecDecoder(PictureDecoder):
    """Files: PyNvVideoCodec's bundled FFmpeg demuxer; rtsp://: OpenCV's (``RtspPacketReader``); NVDEC decodes,
    on the runtime's primary context."""

    def __init__(self, url: str, source_id: str, pool: SurfacePool, device: int = 0,
                 config: SourceConfig | None = None) -> None:
        self._url = url
        self._source_id = source_id
        self._pool = pool
        self._device = device
        self._config = config or SourceConfig(source_id, "rtsp" if is_rtsp(url) else "file", url)
        self._nvc = None
        self._demuxer = None
        self._packets = None  # RtspPacketReader: rtsp:// is demuxed by OpenCV (see the module docstring)
        self._size = (0, 0)
        self._decoder = None
        self._stream = None
        self._fps = 0.0
        self._codec = None
        self.resolution_changes = 0

    def _where(self) -> str:
        return f"source {self._source_id} ({redact(self._url)})"

    def open(self) -> None:
        if is_rtsp(self._url):  # first: a dead camera fails with its own reason, GPU or not
            from streamd.sources.rtsp import RtspPacketReader  # noqa: PLC0415

            self._packets = RtspPacketReader(self._config)
            self._packets.open()
        nvc = import_pynvvideocodec()
        from streamd.cuda import runtime  # noqa: PLC0415
        from streamd.cuda.stream import Stream  # noqa: PLC0415

        try:
            if runtime.device_count() <= self._device:
                raise SourceError(f"{self._where()}: decoder 'nvdec' needs CUDA device {self._device}, "
                                  f"{runtime.device_count()} visible")
            runtime.use_device(self._device)
        except runtime.CudaError as error:
            raise SourceError(f"{self._where()}: decoder 'nvdec' needs an NVIDIA GPU: {error}") from error
        self._nvc = nvc
        if self._packets is not None:
            self._codec = self._rtsp_codec(nvc)
            self._size = self._packets.size
        else:
            try:
                self._demuxer = nvc.CreateDemuxer(filename=self._url)
            except Exception as error:  # PyNvVideoCodec raises its own and plain RuntimeErrors
                raise SourceError(f"{self._where()}: cannot open the stream for NVDEC: {error}") from error
            self._fps = float(self._demuxer.FrameRate() or 0.0)
            self._codec = self._demuxer.GetNvCodecId()
            self._size = (self._demuxer.Width(), self._demuxer.Height())
        check_pixels(f"{self._where()}: the stream", *self._size, self._config.max_pixels, before_decoding=True)
        if self._stream is None:
            self._stream = Stream()
        self._create_decoder(*self._size)

    def _rtsp_codec(self, nvc):
        fourcc = self._packets.fourcc
        name = RTSP_CODECS.get(fourcc.lower())
        if name is None:
            raise SourceError(f"{self._where()}: decoder 'nvdec' on RTSP takes H.264 or H.265; the camera sends "
                              f"{fourcc or 'an unknown codec'}")
        return getattr(nvc.cudaVideoCodec, name)

    def _stream_description(self) -> str:
        if self._demuxer is None:
            return f"{self._packets.fourcc if self._packets is not None else '?'}"
        return f"chroma {self._demuxer.ChromaFormat()}, {self._demuxer.BitDepth()}-bit"

    def _create_decoder(self, width: int, height: int) -> None:
        from streamd.cuda import runtime  # noqa: PLC0415

        _, cuda_driver, _ = runtime.bindings()
        context = runtime.check(cuda_driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
        size = {"maxwidth": max(int(width), DEFAULT_MAX_WIDTH), "maxheight": max(int(height), DEFAULT_MAX_HEIGHT)}
        try:
            try:
                # The runtime's primary context and our stream: the decoder's output copy and ours are ordered.
                self._decoder = self._nvc.CreateDecoder(gpuid=self._device, codec=self._codec,
                                                        cudacontext=int(context), cudastream=self._stream.ptr,
                                                        usedevicememory=True, **size)
            except Exception as error:
                if "cudacontext" not in str(error) and "cudastream" not in str(error):
                    raise
                log.info("%s: PyNvVideoCodec refused our context/stream (%s); it makes its own", self._where(), error)
                self._decoder = self._nvc.CreateDecoder(gpuid=self._device, codec=self._codec, cudacontext=0,
                                                        cudastream=0, usedevicememory=True, **size)
        except Exception as error:
            raise SourceError(f"{self._where()}: NVDEC cannot decode this stream (codec {self._codec}, "
                              f"{width}x{height}, {self._stream_description()}) on GPU {self._device}: {error}"
                              ) from error

    @property
    def fps(self) -> float:
        return self._fps

    def pictures(self) -> Iterator[DeviceNV12 | None]:
        for packet in self._demuxer if self._packets is None else self._rtsp_packets():
            try:
                decoded = self._decoder.Decode(packet)
            except Exception as error:
                decoded = self._redecode_after_size_change(packet, error)
            for picture in decoded:
                yield self._copy(picture)

    def _rtsp_packets(self) -> Iterator[object]:
        """OpenCV's compressed packets as PyNvVideoCodec ``PacketData`` pointing at them; each packet's
        bytes stay referenced here until the decoder has taken it (the next ``next()``). Ends when a read
        fails: the connection closed, or nothing came within the read timeout."""
        number = 0
        while (item := self._packets.read()) is not None:
            data = np.ascontiguousarray(item[0]).reshape(-1)
            packet = self._nvc.PacketData()
            packet.bsl_data = data.ctypes.data
            packet.bsl = data.size
            packet.pts = number
            number += 1
            yield packet

    def _redecode_after_size_change(self, packet, error: Exception) -> list:
        """A sequence larger than the decoder was created for: re-create it at the stream's new size once."""
        width, height = (self._demuxer.Width(), self._demuxer.Height()) if self._demuxer is not None else self._size
        log.info("%s: decode failed (%s); re-creating the NVDEC decoder for %dx%d", self._where(), error,
                 width, height)
        self.resolution_changes += 1
        self._decoder = None
        self._create_decoder(max(width, DEFAULT_MAX_WIDTH * 2), max(height, DEFAULT_MAX_HEIGHT * 2))
        try:
            return list(self._decoder.Decode(packet))
        except Exception as second:
            raise SourceError(f"{self._where()}: NVDEC decode failed: {second}") from second

    def _copy(self, picture) -> DeviceNV12 | None:
        from streamd.cuda import runtime  # noqa: PLC0415

        planes = picture.cuda()
        luma = planes[0].__cuda_array_interface__
        chroma = planes[1].__cuda_array_interface__ if len(planes) > 1 else None
        height, width = int(luma["shape"][0]), int(luma["shape"][1])
        luma_pitch = int(luma["strides"][0]) if luma.get("strides") else width
        surface = self._pool.lease(width, height)
        if surface is None:
            return None
        if chroma is not None:
            chroma_ptr = int(chroma["data"][0])
            chroma_pitch = int(chroma["strides"][0]) if chroma.get("strides") else width
        else:  # one NV12 allocation: chroma right after the luma rows
            chroma_ptr, chroma_pitch = int(luma["data"][0]) + luma_pitch * height, luma_pitch
        cudart, _, _ = runtime.bindings()
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        stream_ptr = self._stream.ptr
        try:
            runtime.check(cudart.cudaMemcpy2DAsync(surface.luma_ptr, width, int(luma["data"][0]), luma_pitch, width,
                                                   height, kind, stream_ptr), "cudaMemcpy2DAsync(NV12 luma)")
            runtime.check(cudart.cudaMemcpy2DAsync(surface.chroma_ptr, width, chroma_ptr, chroma_pitch, width,
                                                   (height + 1) // 2, kind, stream_ptr), "cudaMemcpy2DAsync(NV12 UV)")
            self._stream.synchronize()  # the next Decode may overwrite the source
        except Exception:
            surface.release()
            raise
        return surface

    def close(self) -> None:
        # Reverse order of creation: decoder, demuxer, then (after the decoder's work) our stream.
        self._decoder = None
        self._demuxer = None
        if self._packets is not None:
            self._packets.close()
            self._packets = None
        if self._stream is not None:
            try:
                self._stream.synchronize()
            finally:
                self._stream.close()
                self._stream = None


# decoder name -> PictureDecoder class for NvdecReader ("opencv" never gets here: make_reader keeps
# the OpenCV readers for it). A Jetson "nvv4l2" entry would map to a GStreamer implementation.
DECODERS: dict[str, type[PictureDecoder]] = {"nvdec": PyNvVideoCodecDecoder}


class NvdecReader(FrameReader):
    """A file or RTSP source decoded by NVDEC; ``read()`` returns ``(DeviceNV12, None)``."""

    def __init__(self, config: SourceConfig, device: int = 0, pool_surfaces: int = DEFAULT_POOL_SURFACES) -> None:
        self._config = config
        self._device = device
        self.pool = SurfacePool(device, pool_surfaces)
        self._decoder: PictureDecoder | None = None
        self._pictures: Iterator[DeviceNV12 | None] | None = None
        self._pending: deque[DeviceNV12] = deque()
        self.dropped_exhausted = 0
        self._decode_errors = LogThrottle()  # a looping corrupt file fails the same way on every pass

    def open(self) -> None:
        config = self._config
        decoder = DECODERS[config.decoder](config.url, config.id, self.pool, self._device, config=config)
        try:
            decoder.open()
        except SourceError:
            decoder.close()
            raise
        self._decoder = decoder
        self._pictures = decoder.pictures()

    def read(self) -> tuple[DeviceNV12, object | None] | None:
        if self._pictures is None:
            return None
        try:
            for picture in self._pictures:
                if picture is None:
                    self.dropped_exhausted += 1
                    if self.dropped_exhausted == 1 or self.dropped_exhausted % 100 == 0:
                        log.warning("source %s: every NVDEC surface is in use; %d decoded pictures dropped",
                                    self._config.id, self.dropped_exhausted)
                    continue
                return picture, None
        except SourceError as error:
            due = self._decode_errors.occurred()
            if due is not None:
                count, _ = due
                log.warning("%s%s", error, "" if self._decode_errors.total == 1 else
                            f" ({count} decode failure(s) since the last line, {self._decode_errors.total} in all; "
                            f"summarised at most every {self._decode_errors.interval_seconds:g} s)")
            return None
        return None

    @property
    def native_fps(self) -> float:
        return self._decoder.fps if self._decoder is not None else 0.0

    def rewind(self) -> bool:
        self._close_decoder()
        try:
            self.open()
        except SourceError:
            return False
        return True

    def _close_decoder(self) -> None:
        self._pictures = None
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def close(self) -> None:
        self._close_decoder()
        self.pool.close()


def preflight(config: SourceConfig, device: int = 0) -> None:
    """Start-up check for an nvdec source: the package imports and GPU ``device`` is visible (SourceError
    naming the source otherwise). The codec is checked when the stream opens (it needs the stream)."""
    try:
        import_pynvvideocodec()
    except SourceError as error:
        raise SourceError(f"source {config.id}: {error}") from None
    try:
        from streamd.cuda import runtime  # noqa: PLC0415

        count = runtime.device_count()
    except Exception as error:  # CudaError: no cuda-python or no driver
        raise SourceError(f"source {config.id}: decoder 'nvdec' needs an NVIDIA GPU and cuda-python: {error}"
                          ) from None
    if count == 0:
        raise SourceError(f"source {config.id}: decoder 'nvdec' needs an NVIDIA GPU; none is visible")
    if device >= count:
        raise SourceError(f"source {config.id}: decoder 'nvdec' runs on model.device = {device}, but only "
                          f"{count} CUDA device(s) are visible (0..{count - 1})")


def reader_factory(device: int) -> Callable[[SourceConfig], FrameReader]:
    """``make_reader`` with nvdec sources decoded on GPU ``device`` (the daemon's ``model.device``)."""
    from streamd.sources.readers import make_reader  # noqa: PLC0415

    def make(config: SourceConfig) -> FrameReader:
        if config.decoder == "nvdec" and config.kind in ("file", "rtsp"):
            return NvdecReader(config, device)
        return make_reader(config)

    return make

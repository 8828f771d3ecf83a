"""Every pooled device surface a reader hands out comes back, also when its source stops between reading
a picture and delivering it: a paced file source stopped during its pacing wait, and an RTSP reader
abandoned by the watchdog whose hung read returns late. (The 20-minute GPU soak's device memory crept
by about one 1080p NV12 surface per stopped NVDEC source before this.) Surfaces here are DeviceNV12
objects with a counting release, as NvdecReader's pool makes them; no GPU needed."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry

from streamd.config.schema import SourceConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sources.capture import CaptureSource
from streamd.sources.device_image import DeviceNV12
from streamd.sources.readers import FrameReader
from tests.sources.rtsp_support import wait_for


class Surfaces:
    """What a reader's surface pool would count: leased and given back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leased = 0
        self.returned = 0

    def lease(self) -> DeviceNV12:
        with self.lock:
            self.leased += 1
        return DeviceNV12(0x1000, 0x2000, 64, 48, 64, 64, release=self._give_back)

    def _give_back(self) -> None:
        with self.lock:
            self.returned += 1

    @property
    def outstanding(self) -> int:
        with self.lock:
            return self.leased - self.returned


def drain_slot(source: CaptureSource) -> None:
    """What the service's release_source does with a stopped source's last untaken frame."""
    leftover = source.slot.take(0)
    if leftover is not None:
        leftover.release()


def test_a_paced_source_stopped_while_waiting_gives_its_read_surface_back() -> None:
    surfaces = Surfaces()
    read = threading.Event()

    class PacedDeviceReader(FrameReader):
        def __init__(self, config: SourceConfig) -> None:
            pass

        def open(self) -> None:
            pass

        def read(self):
            surface = surfaces.lease()
            read.set()
            return surface, None

        @property
        def native_fps(self) -> float:
            return 1.0  # a second between frames: the stop comes during the pacing wait

        def close(self) -> None:
            pass

    config = SourceConfig(id="paced", kind="file", url="unused.mp4", pace="native", loop=True)
    source = CaptureSource(config, StreamdMetrics(CollectorRegistry()), reader_factory=PacedDeviceReader)
    source.start()
    try:
        assert wait_for(lambda: source.frames_delivered >= 1 and surfaces.leased >= 2, timeout=10)
    finally:
        source.stop()
    assert not source.alive
    drain_slot(source)
    assert surfaces.leased >= 2 and surfaces.outstanding == 0, (surfaces.leased, surfaces.returned)


def test_a_late_frame_of_an_abandoned_rtsp_reader_is_given_back() -> None:
    surfaces = Surfaces()
    hang = threading.Event()

    class HangingDeviceReader(FrameReader):
        """Two frames, then a read that blocks until ``hang`` is set and returns a surface late."""

        def __init__(self, config: SourceConfig) -> None:
            self._reads = 0

        def open(self) -> None:
            pass

        def read(self):
            self._reads += 1
            if self._reads > 2:
                hang.wait()
            time.sleep(0.01)
            return surfaces.lease(), None

        @property
        def native_fps(self) -> float:
            return 0.0

        def close(self) -> None:
            pass

    metrics = StreamdMetrics(CollectorRegistry())
    config = SourceConfig(id="hang", kind="rtsp", url="rtsp://127.0.0.1/x", read_timeout_seconds=0.5,
                          stall_timeout_seconds=0.3, backoff_initial_seconds=0.05, backoff_max_seconds=0.1)
    source = CaptureSource(config, metrics, reader_factory=HangingDeviceReader)
    source.start()
    try:
        assert wait_for(lambda: (metrics.registry.get_sample_value(
            "streamd_source_errors_total", {"source": "hang", "kind": "stall"}) or 0) >= 1, timeout=10)
    finally:
        hang.set()  # the hung reads return: their late surfaces must not stay leased
        source.stop()
    assert wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("capture-hang-reader-")],
                    timeout=5)
    drain_slot(source)
    assert surfaces.leased >= 3 and surfaces.outstanding == 0, (surfaces.leased, surfaces.returned)

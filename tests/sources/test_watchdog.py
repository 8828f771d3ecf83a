"""The stall watchdog with reads that never return (FFmpeg's read timeout usually ends them; this
covers the case where it does not): the source is reported stalled, reconnects, and the abandoned
readers neither deliver frames nor pile up."""

from __future__ import annotations

import threading
import time

import numpy as np
from prometheus_client import CollectorRegistry

from streamd.config.schema import SourceConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sources.capture import CaptureSource
from streamd.sources.readers import FrameReader
from streamd.sources.supervisor import MAX_ABANDONED_READERS
from tests.sources.rtsp_support import wait_for

STALL_SECONDS = 0.3


class HangingReader(FrameReader):
    """Delivers a few frames, then blocks in read() until ``release`` is set; then fails."""

    release = threading.Event()
    frames_before_hang = 3

    def __init__(self, config: SourceConfig) -> None:
        self._delivered = 0
        self._release = HangingReader.release  # readers made after a release hang on the next one

    def open(self) -> None:
        pass

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._delivered < self.frames_before_hang:
            self._delivered += 1
            time.sleep(0.01)
            return np.zeros((8, 8, 3), np.uint8), None
        self._release.wait()
        return np.zeros((8, 8, 3), np.uint8), None  # a late frame: must not reach the slot

    @property
    def native_fps(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("capture-hang-reader-")]


def test_hung_reads_are_abandoned_and_bounded() -> None:
    HangingReader.release.clear()
    metrics = StreamdMetrics(CollectorRegistry())
    config = SourceConfig(id="hang", kind="rtsp", url="rtsp://127.0.0.1/x", read_timeout_seconds=0.5,
                          stall_timeout_seconds=STALL_SECONDS, backoff_initial_seconds=0.05,
                          backoff_max_seconds=0.1)
    source = CaptureSource(config, metrics, reader_factory=HangingReader)
    source.start()
    try:
        assert wait_for(lambda: metrics.registry.get_sample_value(
            "streamd_source_errors_total", {"source": "hang", "kind": "stall"}) == MAX_ABANDONED_READERS, timeout=5)
        states = [s for _, s in source.state_history]
        assert states[:4] == ["connecting", "streaming", "stalled", "connecting"], states
        assert source.frames_delivered % HangingReader.frames_before_hang == 0
        # Every reader hangs for good: after MAX_ABANDONED_READERS the supervisor waits instead of
        # opening more (one live reader + the abandoned ones).
        time.sleep(1.0)
        assert len(_readers()) <= MAX_ABANDONED_READERS + 1
        assert source.state == "backing_off"
        delivered = source.frames_delivered
        hung, HangingReader.release = HangingReader.release, threading.Event()
        hung.set()  # the hung reads return: their late frames must be discarded
        assert wait_for(lambda: source.frames_delivered > delivered, timeout=3)  # and it reconnects
        time.sleep(0.3)
        assert source.frames_delivered % HangingReader.frames_before_hang == 0
    finally:
        HangingReader.release.set()
        source.stop()
    assert wait_for(lambda: not _readers(), timeout=3)

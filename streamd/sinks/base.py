"""What every sink shares: the bounded buffer the pipeline thread offers into, the sink's totals and
metrics, and the sink's own thread with its stop. A sink fills in ``_run`` (its thread's body)."""

from __future__ import annotations

import logging
import socket
import threading

from streamd.config.schema import SinkConfig
from streamd.metrics.definitions import SINK_DROP_REASONS, StreamdMetrics
from streamd.sinks.buffer import DropOldestBuffer

log = logging.getLogger(__name__)

# Kinds of buffered message: (kind, source id, payload bytes).
EVENTS = 0
DETECTIONS = 1
# On a clean stop, how long buffered messages may still go out before the rest are counted as dropped.
STOP_FLUSH_SECONDS = 1.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


class Sink:
    def __init__(self, config: SinkConfig, metrics: StreamdMetrics | None) -> None:
        self.config = config
        self.name = config.name
        self.node = config.node or socket.gethostname().split(".")[0]
        self._buffer = DropOldestBuffer(config.buffer_messages)
        self._metrics = metrics
        self._stop = threading.Event()
        self.connected = False
        self._in_flight = 0  # handed to the broker, not yet acknowledged (the sink thread's count)
        self.sent = 0
        self.dropped = 0
        self.dropped_by_reason = dict.fromkeys(SINK_DROP_REASONS, 0)
        if metrics is not None:
            for reason in SINK_DROP_REASONS:
                metrics.sink_dropped.labels(self.name, reason)
            metrics.sink_sent.labels(self.name)
            metrics.sink_connected.labels(self.name).set(0)
            metrics.sink_buffered.labels(self.name).set_function(lambda: self.buffered)
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the pipeline thread's side: never waits ---------------------------------------------------
    def offer(self, kind: int, source_id: str, payload: bytes) -> None:
        if not self._buffer.put((kind, source_id, payload)):
            self._count_dropped("buffer_full")

    # -- the sink thread's side ----------------------------------------------------------------------
    def _run(self) -> None:
        raise NotImplementedError

    def _count_sent(self, amount: int = 1) -> None:
        self.sent += amount
        if self._metrics is not None:
            self._metrics.sink_sent.labels(self.name).inc(amount)

    def _count_dropped(self, reason: str, amount: int = 1) -> None:
        self.dropped += amount
        self.dropped_by_reason[reason] += amount
        if self._metrics is not None and amount:
            self._metrics.sink_dropped.labels(self.name, reason).inc(amount)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        if self._metrics is not None:
            self._metrics.sink_connected.labels(self.name).set(int(connected))
            if connected:
                self._metrics.sink_connects.labels(self.name).inc()

    @property
    def buffered(self) -> int:
        """Messages waiting: in the buffer, or handed to the broker and not yet acknowledged."""
        return len(self._buffer) + self._in_flight

    def request_stop(self) -> None:
        """Start stopping without waiting (``close`` waits): several sinks flush at once."""
        self._stop.set()

    def close(self, timeout: float = STOP_FLUSH_SECONDS + 1.0) -> None:
        """Stop after sending what is buffered (at most STOP_FLUSH_SECONDS); one line with the totals."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.dropped_by_reason.items() if count)
        log.info("sink %s: stopped; %d message(s) sent, %d dropped%s", self.name, self.sent, self.dropped,
                 f" ({reasons})" if reasons else "")

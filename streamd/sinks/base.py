"""What every sink shares: the bounded buffer the pipeline thread offers into, the sink's totals and
metrics, and the sink's own thread with its stop. A sink fills in ``_run`` (its thread's body).
``NumberedSink`` adds numbered messages and, with ``buffer_path``, the buffer kept on disk."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamd.config.schema import SinkConfig
from streamd.errors import StreamdError
from streamd.metrics.definitions import SINK_DROP_REASONS, StreamdMetrics
from streamd.sinks.buffer import DropOldestBuffer
from streamd.sinks.journal import Journal, JournalError, Record

log = logging.getLogger(__name__)

# Kinds of buffered message: (kind, source id, payload bytes).
EVENTS = 0
DETECTIONS = 1
# On a clean stop, how long buffered messages may still go out before the rest are counted as dropped.
STOP_FLUSH_SECONDS = 1.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# With buffer_path: what was offered is appended at least this often; the cursor of what is settled is
# written at most this often.
JOURNAL_FLUSH_SECONDS = 0.25


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


class NumberedSink(Sink):
    """A sink whose buffer holds records ``(number, kind, source id, payload)``, numbered in the order offered.
    With ``buffer_path`` the records also go to disk (streamd.sinks.journal) from the sink's thread, which
    calls ``_persist`` often and ``_keep`` when it ends: a restart puts back what was not sent, with its
    numbers. A subclass says which number a buffered item (raw or rendered) has: ``_number_of``."""

    def __init__(self, config: SinkConfig, metrics: StreamdMetrics | None) -> None:
        super().__init__(config, metrics)
        self._next_number = 0  # the pipeline thread's: the number of the next message offered
        self._journal: Journal | None = None
        self._unpersisted: deque[Record] = deque()  # offered, not yet on disk (the pipeline appends)
        self._persisted_upto = -1
        self._flushed_at = 0.0
        self.kept = 0  # left on disk for the next start, when stopped
        if config.buffer_path:
            self._open_journal(Path(config.buffer_path))

    def _open_journal(self, base: Path) -> None:
        worker = os.environ.get("STREAMD_WORKER")
        folder = base / self.name / (f"worker{worker}" if worker else "")
        try:
            self._journal = Journal(folder)
            records = self._journal.recover()
        except JournalError as error:
            raise StreamdError(f"sink {self.name}: buffer_path: {error}") from error
        self._next_number = self._journal.next_number
        self._persisted_upto = self._next_number - 1
        for record in records:
            if not self._buffer.put(record):
                self._count_dropped("buffer_full")
        if records:
            log.info("sink %s: %d message(s) kept in %s from before, sent first", self.name, len(self._buffer),
                     folder)

    def offer(self, kind: int, source_id: str, payload: bytes) -> None:
        number = self._next_number
        self._next_number = number + 1
        record = (number, kind, source_id, payload)
        if self._journal is not None:
            self._unpersisted.append(record)  # the sink's thread writes it
        if not self._buffer.put(record):
            self._count_dropped("buffer_full")

    def _number_of(self, item: Any) -> int:
        """The number of a buffered item: a record's first field; a subclass's rendered form says its own."""
        return item[0]

    def _persist(self, in_flight: Iterable[int] = (), force: bool = False) -> None:
        """With buffer_path: what was offered since, onto the disk; the cursor of what is settled (the oldest
        of ``in_flight``, the numbers sent and not yet acknowledged, else the buffer's head, else the next
        one) at most every JOURNAL_FLUSH_SECONDS (``force``: now, and synced)."""
        journal = self._journal
        if journal is None:
            return
        records = []
        while self._unpersisted:
            records.append(self._unpersisted.popleft())
        if records:
            journal.append(records)
            self._persisted_upto = records[-1][0]
        now = time.monotonic()
        if not force and now - self._flushed_at < JOURNAL_FLUSH_SECONDS:
            return
        self._flushed_at = now
        first = self._buffer.first()
        candidates = [self._persisted_upto + 1, *in_flight]
        if first is not None:
            candidates.append(self._number_of(first))
        journal.settle(min(candidates))
        journal.flush(sync=force)

    def _keep(self) -> None:
        """The sink's thread ends: without buffer_path what is buffered is dropped (counted, ``stopped``);
        with it, it stays on disk for the next start (what was in flight put back in the buffer first)."""
        if self._journal is None:
            self._count_dropped("stopped", len(self._buffer.take(len(self._buffer))))
            return
        self.kept = len(self._buffer)
        self._persist(force=True)
        self._journal.close()
        log.info("sink %s: %d message(s) kept in %s for the next start", self.name, self.kept, self._journal.folder)

"""Workers' messages to the one public endpoint.

An XSUB socket connects to every worker's internal ``ipc://`` publisher and subscribes to everything;
each message goes out through the same ``Publisher`` a single-process daemon uses (XPUB, CURVE when
configured, a full subscriber queue costs a counted drop, never a wait). Each source lives on one
worker and ZeroMQ keeps a pipe's order, so every source's messages arrive in order.

The message ``sequence`` is rewritten to one count over the whole service, as one process would
number them: a gap still means messages were lost. The number is replaced in place (its position is
fixed by the schema's field order, and a JSON string cannot hold an unescaped quote), without
parsing the JSON. Messages a worker could not hand over (a gap in its own numbering) widen the gap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from streamd.publish.publisher import Publisher, shared_context

log = logging.getLogger(__name__)

_SEQUENCE_KEY = b',"sequence":'
POLL_MILLISECONDS = 100


def renumber(payload: bytes, sequence: int) -> tuple[bytes, int]:
    """``payload`` with its sequence replaced by ``sequence``; also the worker's own number (-1: none)."""
    start = payload.find(_SEQUENCE_KEY)
    if start < 0:
        return payload, -1
    start += len(_SEQUENCE_KEY)
    end = payload.find(b",", start)
    try:
        own = int(payload[start:end])
    except ValueError:
        return payload, -1
    return payload[:start] + str(sequence).encode() + payload[end:], own


class Forwarder:
    """``connect()`` worker endpoints (any time), ``run()`` in a thread until ``stop()``."""

    def __init__(self, publisher: Publisher, worker_of_source: Callable[[bytes], int]) -> None:
        self._publisher = publisher
        self._worker_of_source = worker_of_source
        self._socket = shared_context().socket(zmq.XSUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)  # the workers' own queues bound what waits
        self._socket.send(b"\x01")  # subscribe to every topic
        self._connected: set[str] = set()
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._stop = threading.Event()
        self.sequence = 0
        self._last_own: dict[int, int] = {}
        self.forwarded = 0

    def connect(self, endpoint: str) -> None:
        """Called from any thread; the forwarding thread does the connect (a socket has one owner)."""
        with self._lock:
            self._pending.append(endpoint)

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self._connect_pending()
                if not self._socket.poll(POLL_MILLISECONDS, zmq.POLLIN):
                    continue
                for _ in range(1000):  # drain a burst, then look at connects and stop again
                    try:
                        parts = self._socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._forward(parts)
        finally:
            self._socket.close(0)

    def _connect_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for endpoint in pending:
            if endpoint not in self._connected:
                self._socket.connect(endpoint)
                self._connected.add(endpoint)

    def _forward(self, parts: list[bytes]) -> None:
        if len(parts) != 2:
            return
        if b"/" in parts[0]:  # not a detections message (their topic is a source id): passed on as it is
            self._publisher.send(parts)
            self.forwarded += 1
            return
        worker = self._worker_of_source(parts[0])
        payload, own = renumber(parts[1], self.sequence + 1)
        last = self._last_own.get(worker)
        if own > 0 and last is not None and own > last + 1:
            self.sequence += own - last - 1  # the worker lost these before the forwarder saw them
            payload, _ = renumber(parts[1], self.sequence + 1)
        if own > 0:
            self._last_own[worker] = own
        self.sequence += 1
        self._publisher.send([parts[0], payload])
        self.forwarded += 1

    def worker_restarted(self, worker: int) -> None:
        """A new process numbers from 1 again: no gap to infer against the old one."""
        self._last_own.pop(worker, None)

    def stop(self) -> None:
        self._stop.set()

"""ZeroMQ publisher that never blocks the pipeline.

An XPUB socket with XPUB_NODROP, sent with NOBLOCK: when a subscriber's queue (send_hwm messages)
is full, the send fails at once and the message is counted as dropped, instead of ZeroMQ's silent
per-subscriber drop. Subscriptions are read to keep a subscriber count.
"""

from __future__ import annotations

import logging
import threading

import zmq

from streamd.errors import StreamdError
from streamd.metrics.definitions import StreamdMetrics

log = logging.getLogger(__name__)

_CONTEXT_LOCK = threading.Lock()


def shared_context() -> zmq.Context:
    """One ZeroMQ context per process."""
    with _CONTEXT_LOCK:
        return zmq.Context.instance()


class Publisher:
    """Bind once; ``send()`` from one thread (the pipeline's); ``close()`` idempotent."""

    def __init__(self, endpoint: str, send_hwm: int, metrics: StreamdMetrics | None = None) -> None:
        self.endpoint = endpoint
        self._metrics = metrics
        self._socket = shared_context().socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as error:
            self._socket.close(0)
            raise StreamdError(f"cannot bind publisher to {endpoint}: {error} (port in use? set "
                               "publish.endpoint)") from error
        # The real endpoint (a tcp port of 0 or * becomes the one the OS chose).
        self.bound_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscriptions = 0

    def send(self, parts: list[bytes]) -> bool:
        """True when ZeroMQ took the message for every subscriber; False when it was dropped."""
        self._read_subscriptions()
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if self._metrics is not None:
                self._metrics.messages_dropped.inc()
            return False
        if self._metrics is not None:
            self._metrics.messages_published.inc()
        return True

    def poll_subscriptions(self, timeout_seconds: float) -> int:
        """Wait up to ``timeout_seconds`` for subscription changes; the current subscriber count."""
        if self._socket.poll(int(timeout_seconds * 1000), zmq.POLLIN):
            self._read_subscriptions()
        return self.subscriptions

    def _read_subscriptions(self) -> None:
        while self._socket.poll(0, zmq.POLLIN):
            event = self._socket.recv(zmq.NOBLOCK)
            if event[:1] == b"\x01":
                self.subscriptions += 1
            elif event[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(0)

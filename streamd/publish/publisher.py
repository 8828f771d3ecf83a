"""ZeroMQ publisher that never blocks the pipeline.

An XPUB socket with XPUB_NODROP, sent with NOBLOCK: when a subscriber's queue (send_hwm messages)
is full, the send fails at once and the message is counted as dropped, instead of ZeroMQ's silent
per-subscriber drop. Subscriptions are read to keep a subscriber count (``poll_subscriptions``).

With a CURVE key pair (streamd.publish.curve) the socket is a CURVE server: only subscribers whose
public key is in the authorised-keys folder connect, and everything on the wire is encrypted.
"""

from __future__ import annotations

import logging
import threading

import zmq

from streamd.errors import StreamdError
from streamd.metrics.definitions import StreamdMetrics
from streamd.publish.curve import (
    ClientAuthorizer,
    RefusalLog,
    is_loopback_endpoint,
    load_key_pair,
    make_curve_server,
)

log = logging.getLogger(__name__)

_CONTEXT_LOCK = threading.Lock()
_SEND_MORE = zmq.NOBLOCK | zmq.SNDMORE


def shared_context() -> zmq.Context:
    """One ZeroMQ context per process."""
    with _CONTEXT_LOCK:
        return zmq.Context.instance()


class Publisher:
    """Bind once; ``send()`` from one thread (the pipeline's); ``close()`` idempotent."""

    def __init__(self, endpoint: str, send_hwm: int, metrics: StreamdMetrics | None = None,
                 curve_secret_key: str = "", curve_authorized_keys: str = "") -> None:
        """``curve_secret_key`` (a .key_secret file) and ``curve_authorized_keys`` (a folder of .key
        files): a CURVE server; both empty: plaintext."""
        self.endpoint = endpoint
        self._metrics = metrics
        self._authorizer: ClientAuthorizer | None = None
        self._socket = shared_context().socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            if curve_secret_key:
                make_curve_server(self._socket, load_key_pair(curve_secret_key))
                refused = getattr(metrics, "publish_auth_refused", None)  # a worker supervisor's metrics have none
                self._authorizer = ClientAuthorizer(shared_context(), curve_authorized_keys, refusals=RefusalLog(
                    (lambda reason: refused.labels(reason).inc()) if refused is not None else None, endpoint))
                self._authorizer.watch(self._socket)
            elif not is_loopback_endpoint(endpoint):
                log.warning("publishing in plaintext on %s, which other hosts can reach: anyone who connects "
                            "reads every detection; set publish.curve_secret_key and "
                            "publish.curve_authorized_keys (docs/output.md, \"Authenticated subscribers\")", endpoint)
            self._socket.bind(endpoint)
        except (zmq.ZMQError, StreamdError) as error:
            self.close()
            if isinstance(error, StreamdError):
                raise
            raise StreamdError(f"cannot bind publisher to {endpoint}: {error} (port in use? set "
                               "publish.endpoint)") from error
        # The real endpoint (a tcp port of 0 or * becomes the one the OS chose).
        self.bound_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscriptions = 0

    def send(self, parts: list[bytes]) -> bool:
        """True when ZeroMQ took the message for every subscriber; False when it was dropped. Subscription
        changes wait for ``poll_subscriptions``, which reads them all: querying the socket's events on every
        message costs a system call."""
        try:
            if len(parts) == 2 and type(parts[0]) is bytes and type(parts[1]) is bytes:
                # A message's topic and payload: the two sends send_multipart makes, without its checks of
                # each part's type (these are bytes). A large payload is still not copied (copy_threshold).
                # XPUB counts whole messages against the high-water mark: a full queue fails the first part.
                self._socket.send(parts[0], _SEND_MORE)
                self._socket.send(parts[1], zmq.NOBLOCK, copy=False)
            else:
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
        # The socket's event flags: what poll(0) reads too, without building a poller on every message.
        while self._socket.get(zmq.EVENTS) & zmq.POLLIN:
            event = self._socket.recv(zmq.NOBLOCK)
            if event[:1] == b"\x01":
                self.subscriptions += 1
            elif event[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)

    @property
    def curve(self) -> bool:
        return self._authorizer is not None

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(0)
        if self._authorizer is not None:
            self._authorizer.close()

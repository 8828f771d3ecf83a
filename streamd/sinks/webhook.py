"""Webhook sink: each message POSTed as JSON to an HTTP(S) URL, signed with HMAC-SHA256.

One thread sends one message at a time over one kept-alive connection, so messages arrive in the order
the pipeline published them (per source and overall). Each request carries ``X-Streamd-Timestamp`` (Unix
seconds of this attempt) and ``X-Streamd-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` with the sink's secret: the timestamp is signed, so a receiver can refuse a
replayed request (docs/sinks.md shows the check). ``X-Streamd-Delivery`` stays the same across retries
of a message, so a receiver can drop a repeat.

A connection error, a timeout, HTTP 5xx, 408 or 429 leaves the message at the head and tries again after
a backoff with jitter (or the receiver's Retry-After); any other answer outside 2xx is the receiver
refusing that message: counted as ``rejected``, not retried.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import random
import select
import socket
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamd import __version__
from streamd.config.schema import SinkConfig, SourceConfig
from streamd.log_throttle import LogThrottle
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks.base import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    DETECTIONS,
    STOP_FLUSH_SECONDS,
    Sink,
)
from streamd.sinks.count_document import Counts

log = logging.getLogger(__name__)

# A Retry-After longer than this is cut to it: a receiver's maintenance window should not silence the sink
# for hours while its buffer overflows unnoticed.
RETRY_AFTER_MAX_SECONDS = 300.0
# While idle, how often the sink checks that the receiver can still be reached (a connection, no request),
# so streamd_sink_connected tells the truth between sparse events.
IDLE_CHECK_SECONDS = 30.0
# How much of a refusing answer's body a log line quotes.
EXCERPT_BYTES = 200
# Answers worth trying again: the receiver is away, overloaded or timed out, not refusing the message.
RETRY_STATUSES = frozenset({408, 429})
# The connection broke under a request on a connection opened earlier (the receiver closed it while idle):
# sent again at once on a fresh connection before it counts as a failure.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass
class Delivery:
    """One POST: ``counted`` for the one request that stands for its buffered message in the totals."""

    kind: str  # "events", "detections" or "counts": the X-Streamd-Kind header
    source_id: str
    body: bytes
    counted: bool
    id: str


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Streamd-Signature value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from ``now``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class WebhookSink(Sink):
    def __init__(self, config: SinkConfig, sources: Sequence[SourceConfig], metrics: StreamdMetrics | None,
                 model_id: str = "") -> None:
        super().__init__(config, metrics)
        url = urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.url = f"{url.scheme}://{url.netloc}{url.path}"  # for log lines: the query may hold a token
        self._secret = config.secret.encode()
        self._ssl = ssl.create_default_context(cafile=config.ca_file or None) if self._https else None
        self._classes = frozenset(config.classes)
        self._counts = Counts(sources) if "counts" in config.carries else None
        self._headers = {"Content-Type": "application/json", "User-Agent": f"streamd/{__version__}",
                         "X-Streamd-Node": self.node}
        if config.username:
            credentials = f"{config.username}:{config.password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        self._connection: http.client.HTTPConnection | None = None
        self._pending: list[Delivery] = []  # the message being delivered, its requests not yet answered
        self._rejections: dict[int, LogThrottle] = {}

    # -- the sink thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_INITIAL_SECONDS
        failing_since = 0.0
        last_problem = ""
        stopping_at = 0.0
        checked_at = -IDLE_CHECK_SECONDS
        try:
            while True:
                if self._stop.is_set():
                    stopping_at = stopping_at or time.monotonic()
                    if failing_since or time.monotonic() - stopping_at > STOP_FLUSH_SECONDS:
                        break
                if not self._pending:
                    taken = self._buffer.take(1)
                    if taken:
                        self._pending = self._render(taken[0])
                        self._in_flight = int(any(d.counted for d in self._pending))
                        continue
                    if self._stop.is_set():
                        break
                    if time.monotonic() - checked_at < IDLE_CHECK_SECONDS:
                        self._buffer.wait(min(1.0, IDLE_CHECK_SECONDS - (time.monotonic() - checked_at)))
                        continue
                    checked_at = time.monotonic()
                    problem = self._check()
                else:
                    problem, retry_after = self._deliver(self._pending[0])
                if problem is None:
                    if failing_since:
                        log.info("sink %s: %s answers again after %.1f s; %d message(s) buffered", self.name,
                                 self.url, time.monotonic() - failing_since, self.buffered)
                    failing_since, last_problem, backoff = 0.0, "", BACKOFF_INITIAL_SECONDS
                    checked_at = time.monotonic()  # an answer is as good as a check
                    if not self.connected:
                        self._set_connected(True)
                    continue
                if self.connected:
                    self._set_connected(False)
                failing_since = failing_since or time.monotonic()
                if problem != last_problem:  # one line per kind of failure, not one per retry
                    log.warning("sink %s: cannot deliver to %s: %s; retrying with backoff up to %.0f s, %d "
                                "message(s) buffered", self.name, self.url, problem, BACKOFF_MAX_SECONDS,
                                self.buffered)
                    last_problem = problem
                if not self._pending:
                    continue  # an idle check: the next one comes in IDLE_CHECK_SECONDS, or with a message
                # Equal jitter: half the backoff, plus up to as much again, so many daemons do not retry in step.
                delay = backoff / 2 + random.uniform(0, backoff / 2)
                if retry_after is not None:
                    delay = min(max(retry_after, BACKOFF_INITIAL_SECONDS), RETRY_AFTER_MAX_SECONDS)
                backoff = min(BACKOFF_MAX_SECONDS, backoff * 2)
                self._stop.wait(delay)
        finally:
            self._close_connection()
            unsent = sum(d.counted for d in self._pending) + len(self._buffer.take(len(self._buffer)))
            self._pending, self._in_flight = [], 0
            self._count_dropped("stopped", unsent)
            if self.connected:
                self._set_connected(False)

    def _render(self, message: tuple[int, str, bytes]) -> list[Delivery]:
        kind, source_id, payload = message
        if kind == DETECTIONS:
            if self._classes:
                document = json.loads(payload)
                wanted = [d for d in document.get("detections", []) if d.get("label") in self._classes]
                if not wanted:
                    return []
                document["detections"] = wanted
                payload = json.dumps(document, separators=(",", ":")).encode()
            return [Delivery("detections", source_id, payload, True, uuid.uuid4().hex)]
        out: list[Delivery] = []
        if "events" in self.config.carries:
            out.append(Delivery("events", source_id, payload, True, uuid.uuid4().hex))
        if self._counts is not None:
            document = json.loads(payload)
            if self._counts.update(source_id, document):
                body = json.dumps(self._counts.document(source_id, self.node, document), separators=(",", ":"))
                out.append(Delivery("counts", source_id, body.encode(), not out, uuid.uuid4().hex))
        return out

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is None:
            timeout = self.config.timeout_seconds
            connection = (http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
                          if self._https else http.client.HTTPConnection(self._host, self._port, timeout=timeout))
            connection.connect()
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _check(self) -> str | None:
        """Idle: the open connection is still there, or a new one opens. None, or what went wrong."""
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # An idle connection has nothing to read: readable means the receiver closed it (or said goodbye).
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if not readable:
                return None
        self._close_connection()
        try:
            self._open()
        except (OSError, http.client.HTTPException) as error:
            self._close_connection()
            return f"{type(error).__name__}: {error}"
        return None

    def _deliver(self, delivery: Delivery) -> tuple[str | None, float | None]:
        """POST ``delivery``. (None, None) once it is answered for good (taken or refused); else what went
        wrong and the receiver's Retry-After, and it stays at the head."""
        for fresh in (self._connection is None, True):
            try:
                status, reason, retry_after, excerpt = self._post(delivery)
                break
            except _STALE_CONNECTION as error:
                self._close_connection()
                if fresh:
                    return f"{type(error).__name__}: {error}", None
            except (OSError, http.client.HTTPException) as error:
                self._close_connection()
                return f"{type(error).__name__}: {error}", None
        if status >= 500 or status in RETRY_STATUSES:
            return f"HTTP {status} {reason}", retry_after
        self._pending.pop(0)
        if not any(d.counted for d in self._pending):
            self._in_flight = 0
        if 200 <= status < 300:
            if delivery.counted:
                self._count_sent()
        else:
            self._reject(delivery, status, reason, excerpt)
        return None, None

    def _post(self, delivery: Delivery) -> tuple[int, str, float | None, bytes]:
        connection = self._open()
        timestamp = str(int(time.time()))
        headers = {**self._headers, "X-Streamd-Kind": delivery.kind, "X-Streamd-Source": delivery.source_id,
                   "X-Streamd-Delivery": delivery.id, "X-Streamd-Timestamp": timestamp,
                   "X-Streamd-Signature": signature(self._secret, timestamp, delivery.body)}
        connection.request("POST", self._target, body=delivery.body, headers=headers)
        response = connection.getresponse()
        body = response.read()  # all of it: the connection is used again
        if response.will_close:
            self._close_connection()
        retry_after = retry_after_seconds(response.getheader("Retry-After"), time.time())
        return response.status, response.reason, retry_after, body[:EXCERPT_BYTES]

    def _reject(self, delivery: Delivery, status: int, reason: str, excerpt: bytes) -> None:
        if delivery.counted:
            self._count_dropped("rejected")
        throttle = self._rejections.setdefault(status, LogThrottle())
        due = throttle.occurred()
        if due is None:
            return
        hint = "; redirects are not followed: set url to the final address" if 300 <= status < 400 else ""
        text = excerpt.decode("utf-8", "replace").strip()
        what = (f"a {delivery.kind} message from {delivery.source_id}" if throttle.total == 1
                else f"{due[0]} message(s) since the last such line")
        log.warning("sink %s: %s answered HTTP %d %s to %s (not retried, counted as rejected)%s%s", self.name,
                    self.url, status, reason, what, hint, f": {text}" if text else "")

    def close(self, timeout: float = STOP_FLUSH_SECONDS + 1.0) -> None:
        """Stop after sending what is buffered (at most STOP_FLUSH_SECONDS); a request still waiting for its
        answer then is cut off."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(STOP_FLUSH_SECONDS + 0.2)
        connection = self._connection
        if self._thread.is_alive() and connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)  # the waiting request fails at once
            except OSError:
                pass
        super().close(timeout)

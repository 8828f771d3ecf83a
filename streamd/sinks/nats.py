"""NATS JetStream sink: the daemon's events, detections and counts in a JetStream stream, so that one
stream collects a fleet of daemons.

Subjects, under ``<subject_prefix>.<node>.<source>`` (the source id as one token: ``.`` becomes ``_``):

- ``events``: each ``streamd.events/1`` message as the ZeroMQ subscribers get it;
- ``detections``: each frame's ``streamd.detections/1`` message (filtered by source and class);
- ``counts``: the source's ``streamd.counts/1`` document, after an events message changed a count.

The stream is created with the configured subjects, retention and limits if it does not exist; one that
exists is used as it is, provided its subjects take this sink's.

The sink's thread runs an asyncio loop that owns the nats-py client. Each connection gets a fresh client
with nats-py's own reconnecting off: what the previous one had in flight without an acknowledgement goes
back to the head of the buffer, and goes first, in order, on the next connection. Every publication
carries a ``Nats-Msg-Id`` fixed when its message was first rendered, so a message sent again because its
acknowledgement was lost is stored once (within the stream's duplicate window): exactly once in the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from streamd.config.schema import SinkConfig, SourceConfig
from streamd.config.subjects import covers, subject_token
from streamd.log_throttle import LogThrottle
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks.base import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    DETECTIONS,
    JOURNAL_FLUSH_SECONDS,
    STOP_FLUSH_SECONDS,
    NumberedSink,
)
from streamd.sinks.count_document import Counts
from streamd.sinks.journal import Record

log = logging.getLogger(__name__)

# Per server URL (each is tried twice: nats-py's pool has no "once"); JetStream API calls.
CONNECT_TIMEOUT_SECONDS = 5.0
API_TIMEOUT_SECONDS = 5.0
# Publications sent and not yet acknowledged: enough to fill a link's round trip.
IN_FLIGHT = 256
# The oldest unacknowledged publication waits this long before the connection counts as broken.
ACK_TIMEOUT_SECONDS = 5.0
# With nothing to send, the loop looks at the buffer this often (an ack or a stop wakes it sooner). Offers
# do not wake it: a wake-up from the pipeline thread cost that thread up to a millisecond at p99 (the
# woken loop takes the GIL), against a few microseconds for the append alone.
OFFER_POLL_SECONDS = 0.05

RETENTIONS = ("limits", "interest", "workqueue")
STORAGES = ("file", "memory")


class _Message:
    """One buffered message, rendered: its number (the order offered), its publications (subject, payload,
    message id), each set to None once JetStream acknowledged it, so a resend after a lost connection sends
    only the rest."""

    __slots__ = ("number", "publications", "refused")

    def __init__(self, number: int, publications: list[tuple[str, bytes, str] | None]) -> None:
        self.number = number
        self.publications = publications
        self.refused = False

    def unacked(self) -> int:
        return sum(publication is not None for publication in self.publications)


def server_names(servers: Sequence[str]) -> str:
    """The servers for log lines: scheme, host and port, never credentials."""
    names = []
    for server in servers:
        url = urlsplit(server if "://" in server else f"nats://{server}")
        names.append(f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else ""))
    return ", ".join(names)


class NatsSink(NumberedSink):
    def __init__(self, config: SinkConfig, sources: Sequence[SourceConfig], metrics: StreamdMetrics | None,
                 model_id: str = "") -> None:
        super().__init__(config, metrics)
        self.prefix = f"{config.subject_prefix}.{subject_token(self.node)}"
        self.stream = config.stream
        self.stream_subjects = list(config.stream_subjects) or [f"{config.subject_prefix}.>"]
        self.servers = server_names(config.servers)
        self._classes = frozenset(config.classes)
        self._counts = Counts(sources) if "counts" in config.carries else None
        # Message ids: a random part, then the message's number, so no two runs' ids meet in a duplicate
        # window. With buffer_path both outlive a restart: a message sent again after one keeps its id.
        self._run_id = self._journal.identity if self._journal is not None else secrets.token_hex(6)
        self._pending: dict[int, _Message] = {}  # in flight on the current connection
        self.duplicates = 0  # resent messages JetStream had already stored
        self._refusals: dict[str, LogThrottle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._link_errors: list[BaseException] = []  # what the client's error callback reported: why a link broke

    def request_stop(self) -> None:
        super().request_stop()
        self._call_in_loop(self._stopping)
        self._call_in_loop(self._wake)

    def _call_in_loop(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has just closed: the sink has stopped
                pass

    # -- the sink thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop.is_set():
            self._stopping.set()
        backoff = BACKOFF_INITIAL_SECONDS
        last_problem = ""
        keeper = asyncio.ensure_future(self._keep_on_disk()) if self._journal is not None else None
        try:
            while not self._stop.is_set():
                client, problem = await self._connect()
                if client is None:
                    if problem != last_problem:  # one line per kind of failure, not one per retry
                        log.warning("sink %s: cannot connect to %s: %s; retrying with backoff up to %.0f s, %d "
                                    "message(s) buffered", self.name, self.servers, problem, BACKOFF_MAX_SECONDS,
                                    self.buffered)
                        last_problem = problem
                    await self._sleep(backoff)
                    backoff = min(BACKOFF_MAX_SECONDS, backoff * 2)
                    continue
                last_problem = ""
                backoff = BACKOFF_INITIAL_SECONDS
                problem = await self._serve(client)
                if problem:
                    log.warning("sink %s: lost %s: %s; %d message(s) buffered", self.name, self.servers, problem,
                                self.buffered)
        finally:
            self._loop = None
            if keeper is not None:
                keeper.cancel()
            self._keep()

    def _number_of(self, item: Any) -> int:
        return item.number if isinstance(item, _Message) else item[0]

    async def _keep_on_disk(self) -> None:
        """With buffer_path, for as long as the sink runs: what is offered goes to disk within
        JOURNAL_FLUSH_SECONDS, whatever the connection is doing (a crash loses at most that much)."""
        while True:
            self._persist(message.number for message in self._pending.values())
            await asyncio.sleep(JOURNAL_FLUSH_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until the sink stops."""
        assert self._stopping is not None  # noqa: S101 (set by _main before anything awaits)
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _connect(self) -> tuple[Any, str]:
        """A connected client and the stream there, or None and what went wrong."""
        import nats  # noqa: PLC0415 (an optional extra: imported when a sink runs)
        from nats.errors import Error as NatsError  # noqa: PLC0415
        from nats.errors import NoServersError  # noqa: PLC0415

        seen: list[BaseException] = []
        self._link_errors = seen

        async def on_error(error: BaseException) -> None:
            seen.append(error)

        async def on_closed() -> None:
            if self._wake is not None:
                self._wake.set()

        worker = os.environ.get("STREAMD_WORKER")
        options: dict[str, Any] = {
            "servers": list(self.config.servers), "name": f"streamd-{self.node}-{self.name}"
            + (f"-worker{worker}" if worker else ""), "allow_reconnect": False, "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1, "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "ping_interval": self.config.keepalive_seconds, "max_outstanding_pings": 2, "error_cb": on_error,
            "closed_cb": on_closed, "disconnected_cb": on_closed}
        if self.config.username:
            options.update(user=self.config.username, password=self.config.password or None)
        if self.config.tls or any(server.startswith("tls://") for server in self.config.servers):
            options["tls"] = ssl.create_default_context(cafile=self.config.ca_file or None)
        client = nats.NATS()
        try:
            await client.connect(**options)
        except (OSError, asyncio.TimeoutError, NatsError) as error:
            cause = seen[-1] if isinstance(error, NoServersError) and seen else error
            await self._discard(client)
            return None, describe(cause)
        problem, created = await self._ensure_stream(client)
        if problem:
            await self._discard(client)
            return None, problem
        config = self.config
        log.info("sink %s: connected to %s, %s stream %s, publishing under %s.", self.name, self.servers,
                 f"created (subjects {self.stream_subjects}, {config.retention} retention, {config.storage} "
                 "storage) the" if created else "using the", self.stream, self.prefix)
        return client, ""

    async def _ensure_stream(self, client: Any) -> tuple[str, bool]:
        """Create the stream if absent; an existing one must take this sink's subjects. The problem ('' for
        none), and whether the stream was created."""
        from nats.errors import Error as NatsError  # noqa: PLC0415
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig  # noqa: PLC0415
        from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError  # noqa: PLC0415

        js = client.jetstream(timeout=API_TIMEOUT_SECONDS)
        pattern = f"{self.prefix}.*.*"
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            info = None
        except ServiceUnavailableError:
            return "JetStream does not answer: is it enabled on the server (nats-server -js)?", False
        except (APIError, NatsError, asyncio.TimeoutError) as error:
            return f"stream {self.stream}: {describe(error)}", False
        if info is not None:
            subjects = list(info.config.subjects or [])
            if not any(covers(subject, pattern) for subject in subjects):
                return (f"the stream {self.stream} exists with subjects {subjects}, which do not take {pattern}; "
                        "add it to them, or name another stream"), False
            return "", False
        config = self.config
        retention = {"limits": RetentionPolicy.LIMITS, "interest": RetentionPolicy.INTEREST,
                     "workqueue": RetentionPolicy.WORK_QUEUE}[config.retention]
        storage = StorageType.FILE if config.storage == "file" else StorageType.MEMORY
        try:
            await js.add_stream(StreamConfig(
                name=self.stream, subjects=self.stream_subjects, retention=retention, storage=storage,
                max_age=config.max_age_seconds or None, max_bytes=config.max_bytes or None,
                duplicate_window=config.duplicate_window_seconds))
        except (APIError, NatsError, asyncio.TimeoutError) as error:
            return f"cannot create the stream {self.stream}: {describe(error)}", False
        return "", True

    async def _discard(self, client: Any) -> None:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except Exception:  # noqa: BLE001 (a client that never connected, or a socket already gone)
            pass

    async def _serve(self, client: Any) -> str:
        """Publish until the connection breaks (what broke it is returned) or the sink stops ('')."""
        from nats.errors import Error as NatsError  # noqa: PLC0415
        from nats.errors import MaxPayloadError  # noqa: PLC0415

        assert self._wake is not None  # noqa: S101 (set by _main)
        acks: list[Any] = []

        async def on_ack(message: Any) -> None:
            acks.append(message)
            self._wake.set()

        inbox = client.new_inbox()
        await client.subscribe(f"{inbox}.*", cb=on_ack)
        pending: dict[int, _Message] = {}  # id(message) -> message, in the order first sent
        self._pending = pending
        tokens: dict[int, tuple[_Message, int, float]] = {}  # reply token -> (message, publication, sent at)
        token = 0
        problem = ""
        stopping_at = 0.0
        self._set_connected(True)
        try:
            while True:
                if acks:
                    taken, acks[:] = list(acks), []
                    problem = self._acknowledged(taken, tokens, pending)
                    if problem:
                        break
                if client.is_closed or not client.is_connected:
                    errors = self._link_errors
                    problem = describe(errors[-1]) if errors else "the connection closed"
                    break
                now = time.monotonic()
                if tokens and now - next(iter(tokens.values()))[2] > ACK_TIMEOUT_SECONDS:
                    problem = f"no acknowledgement from JetStream within {ACK_TIMEOUT_SECONDS:g} s"
                    break
                if self._stop.is_set():
                    stopping_at = stopping_at or now
                    if (not len(self._buffer) and not pending) or now - stopping_at > STOP_FLUSH_SECONDS:
                        break
                room = IN_FLIGHT - len(tokens)
                for item in self._buffer.take(room) if room > 0 else ():
                    message = item if isinstance(item, _Message) else self._render(item)
                    if message is None:
                        continue
                    pending[id(message)] = message
                    for index, publication in enumerate(message.publications):
                        if publication is None:
                            continue
                        subject, payload, message_id = publication
                        token += 1
                        try:
                            await client.publish(subject, payload, reply=f"{inbox}.{token}",
                                                 headers={"Nats-Msg-Id": message_id})
                        except MaxPayloadError as error:  # refused for itself: the rest of the message goes on
                            message.publications[index] = None
                            message.refused = True
                            self._refused(str(error))
                            self._settle(message, pending)
                            continue
                        tokens[token] = (message, index, now)
                self._in_flight = len(pending)
                await self._wait(can_send=len(tokens) < IN_FLIGHT)
        except (OSError, asyncio.TimeoutError, NatsError) as error:
            problem = describe(error)
        self._set_connected(False)
        self._in_flight = 0
        unacked = list(pending.values())
        self._pending = {}
        if self._stop.is_set() and not problem and self._journal is None:
            self._count_dropped("stopped", len(unacked) + len(self._buffer.take(len(self._buffer))))
            await self._discard(client)
            return ""
        # In flight and not acknowledged: first again on the next connection (or, stopping with buffer_path,
        # kept on disk), in the order they were sent, with the message ids they had (JetStream stores once
        # what it already took).
        dropped = self._buffer.put_front(unacked)
        self._count_dropped("buffer_full", dropped)
        await self._discard(client)
        return problem

    def _acknowledged(self, replies: list[Any], tokens: dict[int, tuple[_Message, int, float]],
                      pending: dict[int, _Message]) -> str:
        """Apply JetStream's answers; '' or the problem that makes the connection useless."""
        for reply in replies:
            entry = tokens.get(int(reply.subject.rsplit(".", 1)[1]))
            if entry is None:
                continue
            message, index, _ = entry
            headers = reply.headers or {}
            if headers.get("Status") == "503":  # no responders: no stream takes the subject (deleted?)
                return f"no stream takes {message.publications[index][0]} (was the stream {self.stream} deleted?)"
            del tokens[int(reply.subject.rsplit(".", 1)[1])]
            try:
                answer = json.loads(reply.data) if reply.data else {}
            except ValueError:
                answer = {"error": {"description": f"unreadable acknowledgement {reply.data[:80]!r}"}}
            message.publications[index] = None
            if "error" in answer:  # refused for itself (a stream limit with discard new, a size limit)
                message.refused = True
                self._refused(str(answer["error"].get("description", answer["error"])))
            elif answer.get("duplicate"):
                self.duplicates += 1
            self._settle(message, pending)
        return ""

    def _settle(self, message: _Message, pending: dict[int, _Message]) -> None:
        """A message with every publication answered: counted sent, or dropped as refused."""
        if message.unacked():
            return
        pending.pop(id(message), None)
        if message.refused:
            self._count_dropped("refused")
        else:
            self._count_sent()

    def _refused(self, reason: str) -> None:
        throttle = self._refusals.setdefault(reason, LogThrottle())
        due = throttle.occurred()
        if due is not None:
            log.warning("sink %s: JetStream refused a message: %s (%d time(s) since the last line; counted as "
                        "dropped, reason refused)", self.name, reason, due[0])

    async def _wait(self, can_send: bool) -> None:
        """Until an acknowledgement, a closed connection or a stop wakes the loop, or OFFER_POLL_SECONDS; not at
        all when there is something to send and room to send it (but the client's tasks run first)."""
        assert self._wake is not None  # noqa: S101
        if (can_send and len(self._buffer)) or self._wake.is_set():
            await asyncio.sleep(0)
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), OFFER_POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
        self._wake.clear()

    def _render(self, record: Record) -> _Message | None:
        number, kind, source_id, payload = record
        message_id = f"{self._run_id}-{number}"
        base = f"{self.prefix}.{subject_token(source_id)}"
        if kind == DETECTIONS:
            if self._classes:
                document = json.loads(payload)
                wanted = [d for d in document.get("detections", []) if d.get("label") in self._classes]
                if not wanted:
                    return None
                document["detections"] = wanted
                payload = json.dumps(document, separators=(",", ":")).encode()
            return _Message(number, [(f"{base}.detections", payload, message_id)])
        publications: list[tuple[str, bytes, str] | None] = []
        if "events" in self.config.carries:
            publications.append((f"{base}.events", payload, message_id))
        if self._counts is not None:
            document = json.loads(payload)
            if self._counts.update(source_id, document):
                counts = json.dumps(self._counts.document(source_id, self.node, document), separators=(",", ":"))
                publications.append((f"{base}.counts", counts.encode(), f"{message_id}c"))
        return _Message(number, publications) if publications else None


def describe(error: BaseException) -> str:
    """An exception as one clear phrase for a log line."""
    text = str(error)
    if "Authorization Violation" in text or type(error).__name__ == "AuthorizationError":
        return "the server refused the credentials (Authorization Violation)"
    if "authentication" in text.lower() and "timeout" not in text.lower():
        return f"the server refused: {text}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

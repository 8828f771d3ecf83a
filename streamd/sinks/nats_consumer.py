"""``streamd subscribe --nats``: a pull consumer of the JetStream stream that NATS sinks fill, printing one
line per message (the fleet's consumer example). Ephemeral by default (the stream from its first message,
or from now with ``new``); ``durable`` names a consumer that a later run continues where this one stopped."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamd.analytics.events import format_events
from streamd.errors import StreamdError
from streamd.publish.subscriber import format_message

FETCH_BATCH = 100
FETCH_WAIT_SECONDS = 1.0
# An ephemeral consumer the server forgets this long after its reader went away.
EPHEMERAL_INACTIVE_SECONDS = 60.0
# The first connection: given up after this long (a later loss is retried without end).
CONNECT_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ConsumerOptions:
    url: str
    stream: str = "STREAMD"
    subject: str = ""  # a filter of the stream's subjects; empty: all of them
    durable: str = ""
    new: bool = False
    count: int = 0  # stop after this many messages; 0: never
    user: str = ""
    password: str = ""
    hint_seconds: float = 5.0


def format_stored(subject: str, data: bytes) -> str:
    """One message of the stream for humans: the node (from its subject), then what it says."""
    tokens = subject.split(".")
    node = tokens[-3] if len(tokens) >= 4 else "?"
    kind = tokens[-1]
    try:
        message: dict[str, Any] = json.loads(data)
    except ValueError:
        return f"{subject}: {data[:200]!r}"
    if kind == "events":
        return "\n".join(f"{node} {line}" for line in format_events(message).splitlines())
    if kind == "detections":
        return f"{node} {format_message(message)}"
    if kind == "counts":
        parts = [f"{name} {zone.get('occupancy', 0)}" + (" alarm" if zone.get("alarm") else "")
                 for name, zone in message.get("zones", {}).items()]
        parts += [f"{name} in {line.get('in', 0)} out {line.get('out', 0)}"
                  for name, line in message.get("lines", {}).items()]
        return f"{node} {message.get('source', '?')} counts: {'; '.join(parts) or '-'}"
    return f"{subject}: {json.dumps(message)}"


def consume(options: ConsumerOptions, stop: threading.Event, out: Callable[[str], None],
            note: Callable[[str], None]) -> int:
    """Print the stream's messages (``out``; ``note`` for what is said about them) until ``stop`` or
    ``count``; the number printed. StreamdError when the server or the stream cannot be reached."""
    return asyncio.run(_consume(options, stop, out, note))


async def _consume(options: ConsumerOptions, stop: threading.Event, out: Callable[[str], None],
                   note: Callable[[str], None]) -> int:
    import nats  # noqa: PLC0415 (the nats extra)
    from nats.errors import Error as NatsError  # noqa: PLC0415
    from nats.errors import TimeoutError as NatsTimeout  # noqa: PLC0415
    from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: PLC0415
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    credentials = {"user": options.user, "password": options.password} if options.user else {}
    errors: list[BaseException] = []
    said: set[str] = set()

    async def on_error(error: BaseException) -> None:  # once per kind, not nats-py's traceback per retry
        errors.append(error)
        if said and type(error).__name__ not in said:
            note(f"{options.url}: {type(error).__name__}: {error}; reconnecting")
        said.add(type(error).__name__)

    client = nats.NATS()
    connecting = asyncio.ensure_future(client.connect(
        options.url, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=5,
        error_cb=on_error, **credentials))
    deadline = time.monotonic() + CONNECT_WAIT_SECONDS
    while not connecting.done() and not stop.is_set() and time.monotonic() < deadline:
        await asyncio.wait([connecting], timeout=0.2)
    if not connecting.done() or connecting.exception() is not None:
        connecting.cancel()
        error = connecting.exception() if connecting.done() and not connecting.cancelled() else None
        error = error or (errors[-1] if errors else None)
        await client.close()
        if stop.is_set():
            return 0
        raise StreamdError(f"cannot connect to {options.url}: "
                           + (f"{type(error).__name__}: {error}" if error else "no answer"))
    said.add("")  # connected: a later failure is noted once per kind
    received = 0
    try:
        js = client.jetstream(timeout=5)
        try:
            await js.stream_info(options.stream)
        except NotFoundError as error:
            raise StreamdError(f"no stream {options.stream} on {options.url}: a NATS sink creates it when it first "
                               "connects; --stream names another") from error
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW if options.new else DeliverPolicy.ALL,
                                inactive_threshold=None if options.durable else EPHEMERAL_INACTIVE_SECONDS)
        subscription = await js.pull_subscribe(options.subject, durable=options.durable or None,
                                               stream=options.stream, config=config)
        what = f"subjects {options.subject}" if options.subject else "every subject"
        kind = f"durable consumer {options.durable}" if options.durable else "an ephemeral consumer"
        note(f"reading stream {options.stream} on {options.url} ({what}, {kind}, "
             f"{'new messages' if options.new else 'from its first message'}; Ctrl-C to stop)")
        hint_at = time.monotonic() + options.hint_seconds
        while not stop.is_set() and (options.count == 0 or received < options.count):
            wanted = FETCH_BATCH if options.count == 0 else min(FETCH_BATCH, options.count - received)
            try:
                messages = await subscription.fetch(wanted, timeout=FETCH_WAIT_SECONDS)
            except NatsTimeout:
                messages = []
            except NatsError:  # the connection is away: nats-py reconnects, the next fetch goes on
                await asyncio.sleep(FETCH_WAIT_SECONDS)
                continue
            if not messages:
                if not received and hint_at and time.monotonic() >= hint_at:
                    note(f"nothing in stream {options.stream} for {what} after {options.hint_seconds:g} s; still "
                         "waiting. Check: is a daemon running with a [[sinks]] kind = \"nats\" whose servers "
                         f"include {options.url} and whose stream is {options.stream}; does --subject match its "
                         "subjects (<subject_prefix>.<node>.<source>.events|detections|counts)")
                    hint_at = 0.0
                continue
            for message in messages:
                out(format_stored(message.subject, message.data))
                await message.ack()
                received += 1
    finally:
        await client.close()
    return received

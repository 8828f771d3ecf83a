"""A subscriber for humans (``streamd subscribe``) and for tests: connect, receive, decode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from streamd.analytics import events
from streamd.errors import StreamdError
from streamd.publish.curve import KeyPair, load_key_pair, load_public_key, make_curve_client
from streamd.publish.message import decode
from streamd.publish.publisher import shared_context


class Subscriber:
    """``server_key`` (the daemon's public key: a .key file or the Z85 bytes) with ``client_key`` (this
    subscriber's .key_secret file or KeyPair, whose public half is in the daemon's authorised folder):
    CURVE; neither: plaintext."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = ("",), server_key: bytes | str | Path | None = None,
                 client_key: KeyPair | str | Path | None = None) -> None:
        if (server_key is None) != (client_key is None):
            raise StreamdError("CURVE needs both the server's public key and this subscriber's key pair")
        self._socket = shared_context().socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if server_key is not None and client_key is not None:
            server_public = server_key if isinstance(server_key, bytes) else load_public_key(server_key)
            key_pair = client_key if isinstance(client_key, KeyPair) else load_key_pair(client_key)
            make_curve_client(self._socket, key_pair, server_public)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)

    def receive(self, timeout_seconds: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout_seconds``: a detections message, or an events one
        (topic ``events/<source>``, schema ``streamd.events/1``) for a subscriber whose topics take them in."""
        parts = self.receive_parts(timeout_seconds)
        if parts is None:
            return None
        return events.decode(parts) if events.is_events_topic(parts[0]) else decode(parts)

    def receive_parts(self, timeout_seconds: float) -> list[bytes] | None:
        """The next message's frames undecoded (``decode`` them later: a receiver that keeps up at
        thousands of messages a second without parsing JSON meanwhile), or None after ``timeout_seconds``."""
        if not self._socket.poll(int(timeout_seconds * 1000), zmq.POLLIN):
            return None
        return self._socket.recv_multipart()

    def messages(self, idle_timeout_seconds: float) -> Iterator[dict[str, Any]]:
        """Messages until none arrives for ``idle_timeout_seconds``."""
        while (message := self.receive(idle_timeout_seconds)) is not None:
            yield message

    def collect(self, duration_seconds: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + duration_seconds
        received = []
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.receive(remaining)
            if message is not None:
                received.append(message)
        return received

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def format_message(message: dict[str, Any]) -> str:
    """One line for humans."""
    age_ms = (message["publish_time"] - message["capture_time"]) * 1000
    found = ", ".join(f"{_track(d)}{d['label']} {d['score']:.2f} [{', '.join(f'{v:.0f}' for v in d['box'])}]"
                      for d in message["detections"]) or "-"
    return f"{message['source']} #{message['frame_index']} ({age_ms:.0f} ms): {found}"


def _track(detection: dict[str, Any]) -> str:
    """``id 7 `` for a tracked detection; nothing without tracking or for a box in no track."""
    track_id = detection.get("track_id")
    return "" if track_id is None else f"id {track_id} "

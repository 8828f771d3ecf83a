"""The supervisor's side of the notify protocol: each worker gets its own datagram socket as
``NOTIFY_SOCKET``, so a worker tells the supervisor what it would tell systemd (READY=1, WATCHDOG=1,
RELOADING=1, STOPPING=1, STATUS=...) through the same code path (streamd.daemon.sdnotify)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

MAX_DATAGRAM_BYTES = 4096


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.setblocking(False)

    def receive(self) -> list[dict[str, str]]:
        """Every datagram waiting, each as its ``KEY=value`` fields."""
        messages = []
        while True:
            try:
                data = self._socket.recv(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return messages
            fields = {}
            for line in data.decode(errors="replace").splitlines():
                key, _, value = line.partition("=")
                fields[key] = value
            messages.append(fields)

    def close(self) -> None:
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

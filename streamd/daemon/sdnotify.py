"""systemd's notify protocol: one datagram to the unix socket named by NOTIFY_SOCKET.

No dependency needed; a no-op when not run under systemd (NOTIFY_SOCKET unset).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract-namespace socket: the kernel spells it with a leading NUL.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_seconds = int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() and for_us else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as error:  # systemd gone: nothing to tell, keep running
            log.warning("sd_notify %r failed: %s", state, error)

    def ready(self, status: str = "", **fields: str) -> None:
        """``fields``: extra ``KEY=value`` lines (systemd ignores keys it does not know; a supervisor
        reads where a worker serves its metrics)."""
        extra = "".join(f"\n{key}={value}" for key, value in fields.items())
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else "") + extra)

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        """A reload begins; ``ready()`` ends it. MONOTONIC_USEC (CLOCK_MONOTONIC, as systemd's own) is what
        Type=notify-reload (systemd >= 253) checks; plain notify units accept it too."""
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

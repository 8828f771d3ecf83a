"""systemd notify protocol against a real unix datagram socket, as systemd would listen."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from streamd.daemon.sdnotify import SystemdNotifier
from tests.support import free_port, still_image_config


def receive_all(sock: socket.socket, until: str, timeout: float) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline and not any(until in m for m in messages):
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path: Path, daemon_factory, tiny_model: Path,
                                                     tiny_image: Path) -> None:
    socket_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(socket_path))
        daemon = daemon_factory(still_image_config(tiny_model, tiny_image, free_port()),
                                env={"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "400000"})
        messages = receive_all(listener, "WATCHDOG=1", timeout=30)
        assert messages and messages[0].startswith("READY=1"), daemon.log()
        assert "WATCHDOG=1" in messages
        status, _ = daemon.terminate()
        assert status == 0
        assert "STOPPING=1" in receive_all(listener, "STOPPING=1", timeout=5)


def test_abstract_socket_address_and_watchdog_pid() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@streamd-test", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert notifier.enabled
    assert notifier.watchdog_seconds == 0.0  # the watchdog belongs to another process
    assert not SystemdNotifier({}).enabled

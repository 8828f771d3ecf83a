"""systemd notify protocol against a real unix datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import threading
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
    name = f"streamd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)  # what systemd's "@name" means: the abstract namespace
        listener.settimeout(5.0)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
        assert notifier.enabled
        notifier.ready("2 source(s)")
        notifier.watchdog()
        assert listener.recv(4096).decode() == "READY=1\nSTATUS=2 source(s)"
        assert listener.recv(4096).decode() == "WATCHDOG=1"
    assert notifier.watchdog_seconds == 0.0  # the watchdog belongs to another process
    ours = SystemdNotifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog_seconds == 2.0
    assert not SystemdNotifier({}).enabled


HEARTBEAT_LIMIT_SECONDS = 1.0  # 10 s in production; shortened so the test waits seconds, not minutes
WATCHDOG_USEC = 200_000  # pings every 0.1 s while healthy


def test_watchdog_pings_stop_while_the_pipeline_is_wedged(tmp_path: Path, tiny_model: Path, tiny_image: Path,
                                                          monkeypatch) -> None:
    """The daemon in this process with its detector blocked after a few frames: WATCHDOG=1 keeps
    coming until the heartbeat limit, then stops (systemd would restart the unit), and comes back
    once the detector returns. "One ping arrived" alone would not show that pings mean anything."""
    from streamd.config.load import load_config  # noqa: PLC0415
    from streamd.daemon import service as service_module  # noqa: PLC0415

    monkeypatch.setattr(service_module, "HEARTBEAT_LIMIT_SECONDS", HEARTBEAT_LIMIT_SECONDS)
    release, wedged = threading.Event(), threading.Event()
    wedged_at: list[float] = []
    real_build = service_module.build_detectors

    def build_wedging_detectors(*args, **kwargs):
        detectors = real_build(*args, **kwargs)
        for detector in detectors:
            real_submit = detector.submit

            def submit(frame, real_submit=real_submit):
                if frame.index >= 5 and not release.is_set():
                    if not wedged.is_set():
                        wedged_at.append(time.monotonic())
                        wedged.set()
                    release.wait(30)
                return real_submit(frame)

            detector.submit = submit
        return detectors

    monkeypatch.setattr(service_module, "build_detectors", build_wedging_detectors)
    (tmp_path / "wedged.toml").write_text(still_image_config(tiny_model, tiny_image, free_port()))
    config = load_config(tmp_path / "wedged.toml")
    socket_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(socket_path))
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        stop = threading.Event()
        statuses: list[int] = []
        runner = threading.Thread(target=lambda: statuses.append(service_module.run_service(config, stop, notifier)),
                                  name="service-under-test", daemon=True)
        runner.start()
        try:
            before = receive_all(listener, "WATCHDOG=1", timeout=30)
            assert "WATCHDOG=1" in before, before
            assert wedged.wait(30), "the detector never reached frame 5"
            # Pings may still come until the heartbeat is older than the limit (plus a tick and
            # scheduling on a busy machine); everything sent by then is already queued: drain it.
            time.sleep(max(0.0, wedged_at[0] + HEARTBEAT_LIMIT_SECONDS + 1.0 - time.monotonic()))
            listener.setblocking(False)
            while True:
                try:
                    listener.recv(4096)
                except BlockingIOError:
                    break
            quiet = receive_all(listener, "WATCHDOG=1", timeout=3.0)  # 30 ticks of the watchdog loop
            assert "WATCHDOG=1" not in quiet, f"pinged while wedged: {quiet}"
            release.set()
            assert "WATCHDOG=1" in receive_all(listener, "WATCHDOG=1", timeout=10), "no ping after recovery"
        finally:
            release.set()
            stop.set()
            runner.join(15)
        assert statuses == [0]
        assert "STOPPING=1" in receive_all(listener, "STOPPING=1", timeout=5)

"""``streamd subscribe`` prints one line per message, for humans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO, free_port, still_image_config


def test_subscribe_prints_detections(daemon_factory, tiny_model: Path, tiny_image: Path) -> None:
    port = free_port()
    daemon_factory(still_image_config(tiny_model, tiny_image, port))
    result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", f"tcp://127.0.0.1:{port}", "--count", "3"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("still #") and "a 0.90" in line for line in lines)


def test_subscribe_accepts_host_port_as_tcp(daemon_factory, tiny_model: Path, tiny_image: Path) -> None:
    port = free_port()
    daemon_factory(still_image_config(tiny_model, tiny_image, port))
    result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", f"localhost:{port}", "--count", "2"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"waiting for detections from tcp://localhost:{port} (every source, no CURVE" in result.stderr
    assert "nothing received" not in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_subscribe_without_a_daemon_says_what_it_waits_for_then_what_to_check() -> None:
    """No daemon: one line at once (endpoint, sources), one after a few silent seconds (what to check), and it
    keeps waiting, a subscriber, until stopped."""
    import selectors  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    from streamd.cli import SUBSCRIBE_HINT_SECONDS  # noqa: PLC0415

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "streamd", "subscribe", f"127.0.0.1:{port}", "--source",
                                "cam1", "--source", "door"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO)
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        lines: list[tuple[float, str]] = []
        started = time.monotonic()
        while len(lines) < 2 and time.monotonic() - started < SUBSCRIBE_HINT_SECONDS + 30:
            if selector.select(timeout=1):
                lines.append((time.monotonic() - started, process.stderr.readline().rstrip("\n")))
        assert [text for _, text in lines][:1] == [
            f"waiting for detections from tcp://127.0.0.1:{port} (source(s) cam1, door, no CURVE; Ctrl-C to stop)"]
        assert len(lines) == 2, lines
        seconds, hint = lines[1]
        assert seconds >= SUBSCRIBE_HINT_SECONDS - 0.5
        assert hint.startswith(f"nothing received from tcp://127.0.0.1:{port} after {SUBSCRIBE_HINT_SECONDS:g} s; "
                               "still waiting. Check: is the daemon running")
        for check in (f"is its publish.endpoint tcp://127.0.0.1:{port}", "does it have source(s) cam1, door",
                      "does the daemon use CURVE (publish.curve_secret_key): then give --server-key and --key"):
            assert check in hint
        time.sleep(1.5)
        assert process.poll() is None  # still a subscriber, and the hint said once
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        assert process.stderr.read() == "" and process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_subscribe_rejects_what_is_not_an_endpoint_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", "localhost", "--count", "1"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "expected HOST:PORT or a ZeroMQ endpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_subscribe_help_shows_the_default_endpoint() -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0
    assert "tcp://127.0.0.1:5555" in result.stdout and "HOST:PORT" in result.stdout

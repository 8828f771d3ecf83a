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
    assert f"listening on tcp://localhost:{port}" in result.stderr
    assert len(result.stdout.splitlines()) == 2


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

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

"""A fresh install: `streamd run` with no config at all shows real detections, and `streamd
subscribe` with no argument prints them. Run from an empty folder so nothing of the checkout is
used beyond the package itself (in CI, the installed one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streamd.config.schema import DEFAULT_METRICS_BIND
from tests.support import REPO, wait_for_http


def test_run_without_config_then_subscribe(tmp_path: Path) -> None:
    env = dict(os.environ)
    importable = subprocess.run([sys.executable, "-c", "import streamd"], cwd=tmp_path, env=env,
                                capture_output=True).returncode == 0
    if not importable:  # a checkout that is not pip-installed; in CI the installed copy is used
        env["PYTHONPATH"] = str(REPO)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streamd", "run"], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        status, _ = wait_for_http(f"http://{DEFAULT_METRICS_BIND}/healthz")
        assert status == 200, log_path.read_text()
        result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", "--count", "5"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 5 and all(line.startswith("demo #") for line in lines)
        shapes = {"circle", "square", "triangle", "cross"}
        assert any(any(shape in line for shape in shapes) for line in lines), lines
    finally:
        process.terminate()
        assert process.wait(10) == 0, log_path.read_text()

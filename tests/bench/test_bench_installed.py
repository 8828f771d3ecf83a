"""``streamd bench`` from an installed package: its defaults come from $STREAMD_SHARED, never from the
package's location; without it, bench measures the built-in demo model on the synthetic scene (what
``streamd run`` runs without a config). The package is copied to a site-packages-like folder, away from
the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, SHARED, VTEST, YOLOX_NANO, require_shared


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that imports streamd from a copy under lib/python3.X/site-packages."""
    site = tmp_path / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    shutil.copytree(REPO / "streamd", site / "streamd", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "STREAMD_SHARED"}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import streamd; print(streamd.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the copy, not the checkout
    return env


def bench(env: dict[str, str], cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd", "bench", *flags], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_without_streamd_shared_bench_runs_the_builtin_demo(installed: dict[str, str], tmp_path: Path) -> None:
    """No --model, no --source, no test data: the built-in model on the synthetic scene, as `streamd run`."""
    out = tmp_path / "bench.json"
    result = bench(installed, tmp_path, "--frames", "10", "--rounds", "1", "--paced-seconds", "1",
                   "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert ("streamd bench: $STREAMD_SHARED is not set" in result.stderr
            and "--model builtin:synthetic-shapes (the built-in demo model)" in result.stderr
            and "--source synthetic (the demo's synthetic scene, seed 0, 640x480 at 10 fps)" in result.stderr)
    results = json.loads(out.read_text())
    assert results["model"] == "builtin:synthetic-shapes" and results["source"] == "synthetic"
    assert results["messages_received_rounds"] == [10] and results["pipeline_fps"] > 0
    assert results["paced_fps"] == 10.0 and results["paced_frames"] == 10
    help_text = bench({**installed, "COLUMNS": "1000"}, tmp_path, "--help").stdout
    assert "here $STREAMD_SHARED is not set, so builtin:synthetic-shapes, the built-in demo model" in help_text
    assert "here $STREAMD_SHARED is not set, so synthetic)" in help_text


def test_a_missing_file_names_the_flag(installed: dict[str, str], tmp_path: Path) -> None:
    result = bench(installed, tmp_path, "--model", "nowhere.onnx", "--source", "nowhere.avi", "--frames", "5")
    assert result.returncode == 2
    assert f"streamd bench: --model: file {tmp_path / 'nowhere.onnx'} does not exist" in result.stderr


def test_with_streamd_shared_the_defaults_run(installed: dict[str, str], tmp_path: Path) -> None:
    require_shared(YOLOX_NANO, VTEST)
    env = {**installed, "STREAMD_SHARED": str(SHARED)}
    help_text = bench({**env, "COLUMNS": "1000"}, tmp_path, "--help").stdout  # one line per flag
    assert f"here {SHARED / 'models' / 'yolox_nano.onnx'}" in help_text
    out = tmp_path / "bench.json"
    result = bench(env, tmp_path, "--frames", "10", "--rounds", "1", "--paced-seconds", "0", "--json", str(out))
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert results["model"] == str(YOLOX_NANO) and results["source"] == str(VTEST)
    assert results["messages_received_rounds"] == [10]

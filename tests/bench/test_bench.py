"""``streamd bench`` runs end to end and writes the JSON it documents (numbers are not asserted:
speed is measured in benchmarks, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, VTEST, YOLOX_NANO, require_shared


def test_bench_writes_json(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO, VTEST)
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--model", str(YOLOX_NANO), "--source",
                             str(VTEST), "--frames", "20", "--rounds", "1", "--paced-seconds", "2",
                             "--files", "0", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    for key in ("raw_fps", "pipeline_fps", "ratio", "frame_age_p50_seconds", "frame_age_p99_seconds",
                "inference_mean_seconds"):
        assert results[key] > 0, key
    assert results["messages_received_rounds"] == [20]  # a real subscriber got every frame
    assert results["ratio"] == results["pipeline_fps"] / results["raw_fps"]
    # Each ratio line says what is divided by what, and no two read alike.
    ratio_lines = [line for line in result.stdout.splitlines() if line.startswith("pipeline fps / ")]
    names = [line.split("  ")[0] for line in ratio_lines]
    assert names == ["pipeline fps / raw backend fps, one loop",
                     f"pipeline fps / raw backend fps, {results['workers']} loops x "
                     f"{results['threads_per_worker']} thread(s)",
                     "pipeline fps / the round's best raw backend fps"], result.stdout
    assert "ratio" not in result.stdout
    # The acceptance ratio: against the better raw layout of the same round.
    best = max(results["raw_fps_rounds"][0], results["raw_parallel_fps_rounds"][0])
    assert results["ratio_to_best"] == results["pipeline_fps_rounds"][0] / best
    assert results["pipeline_cpu_seconds_per_frame_rounds"][0] > 0
    assert "end_to_end" not in results  # --files 0: tests/bench/test_end_to_end.py runs that part


def test_bench_accuracy_scores_the_builtin_model_through_the_daemon(tmp_path: Path) -> None:
    out = tmp_path / "accuracy.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--accuracy", "--accuracy-frames", "15",
                             "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert results["frames_received"] == results["frames_sent"], results  # lossless, subscriber waited for
    assert results["map50"] >= 0.9 and results["map50_95"] >= 0.6
    assert "mAP@0.5:0.95" in result.stdout

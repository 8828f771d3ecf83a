"""benchmarks/track_bench.py, the tracker's cost benchmark (its bar: 0.3 ms a frame with 50 objects): its modes
still run and report what the docs quote, and ``--json`` records the result with its provenance. Speed itself
is measured there, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO, YOLOX_NANO, require_shared


def run_bench(*arguments: str) -> dict:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "track_bench.py"), "--objects", "6",
                             "--frames", "120", *arguments], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plain_run_reports_the_median_and_the_tracks_held() -> None:
    report = run_bench()
    assert report["frames"] == 70 and report["appearance"] is True
    assert 0 < report["median_ms"] <= report["p90_ms"]
    assert report["tracks_held"] >= 6  # every object tracked (a few short-lived ones besides)


def test_baseline_rounds_compare_two_trackers() -> None:
    # The current tracker against itself: both medians measured, in alternating rounds.
    report = run_bench("--baseline", "streamd.tracking.bytetrack", "--rounds", "2", "--no-appearance")
    assert report["rounds"] == 2 and report["baseline_median_ms"] > 0 and report["current_median_ms"] > 0
    assert report["speedup"] > 0


def test_calibrate_alternates_tracker_and_inference_rounds() -> None:
    require_shared(YOLOX_NANO)
    report = run_bench("--calibrate", str(YOLOX_NANO), "--rounds", "2")
    assert len(report["tracker_round_medians_ms"]) == len(report["inference_round_medians_ms"]) == 2
    assert report["inference_median_ms"] > report["tracker_median_ms"] > 0  # a detector call is the dearer


def test_json_records_the_result_with_its_provenance(tmp_path) -> None:
    path = tmp_path / "track.json"
    printed = run_bench("--json", str(path))
    written = json.loads(path.read_text())
    assert list(written)[:4] == ["commit", "machine", "command", "versions"]
    assert {key: written[key] for key in printed} == printed
    assert written["command"].startswith("python benchmarks/track_bench.py --objects 6")

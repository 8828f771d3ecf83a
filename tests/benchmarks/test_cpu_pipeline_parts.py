"""benchmarks/cpu_pipeline_parts.py, where the CPU pipeline's time goes: it runs the real pipeline, times the
parts, its tracking comparison really runs one variant without the tracker, and its JSON records the commit,
machine, command and versions. Speed itself is measured there, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.render_results import PROVENANCE_KEYS
from tests.support import REPO, VTEST, YOLOX_NANO, require_shared

TRACKING = "tracking"


def test_compare_tracking_reports_streamds_own_cost_with_and_without_the_tracker(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO, VTEST)
    report_path = tmp_path / "parts.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cpu_pipeline_parts.py"), "--model", str(YOLOX_NANO),
         "--source", str(VTEST), "--frames", "12", "--rounds", "2", "--compare-tracking", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert list(report) == [*PROVENANCE_KEYS, "tracking on", "tracking off"]
    assert report["command"].startswith("python benchmarks/cpu_pipeline_parts.py --model ")
    report = {name: report[name] for name in ("tracking on", "tracking off")}
    for variant in report.values():
        assert len(variant["rounds"]) == 2
        for measured in variant["rounds"]:
            # Own cost is the process's CPU less session.run's: both measured, inference the larger.
            assert measured["process_ms"] > measured["inference_ms"] > 0
            assert abs(measured["own_ms"] - (measured["process_ms"] - measured["inference_ms"])) < 1e-9
        assert 0 < variant["implied_cpu_ratio"] < 1
    assert TRACKING in report["tracking on"]["rounds"][0]["parts_ms"]
    assert all(TRACKING not in measured["parts_ms"] for measured in report["tracking off"]["rounds"])
    assert "tracking inside the pipeline:" in result.stdout

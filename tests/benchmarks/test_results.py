"""benchmarks/results/ is the data, docs/results.md its rendering: the page is what
``python benchmarks/render_results.py`` writes, and every result says which commit, machine and
command produced it and with which versions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import render_results
from tests.support import REPO

RESULTS = sorted((REPO / "benchmarks" / "results").glob("*.json"))


def test_results_page_is_the_rendering() -> None:
    assert render_results.PAGE.read_text() == render_results.render(), (
        "docs/results.md differs from benchmarks/results/: run `python benchmarks/render_results.py`")


def test_page_is_short_and_links_every_result() -> None:
    page = render_results.render()
    assert page.count("\n") <= 400
    for path in RESULTS:
        assert f"(benchmarks/results/{path.name})" in page, path.name


@pytest.mark.parametrize("path", RESULTS, ids=[path.name for path in RESULTS])
def test_every_result_records_its_provenance(path) -> None:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    missing = [key for key in render_results.PROVENANCE_KEYS if key not in data]
    assert not missing, f"{path.name} lacks {missing}"
    assert render_results.NAME.match(path.stem), f"{path.name}: not MACHINE_WHAT.json"


def test_check_exits_1_on_a_stale_page(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(render_results, "PAGE", tmp_path / "results.md")
    assert render_results.main(["--check"]) == 1
    assert render_results.main([]) == 0
    assert render_results.main(["--check"]) == 0


def test_unknown_kinds_still_get_a_row(tmp_path) -> None:
    (tmp_path / "h100_new-thing.json").write_text(
        json.dumps({"commit": None, "machine": None, "command": None, "versions": None, "x": 1}))
    page = render_results.render(render_results.load(tmp_path))
    assert "## Other results" in page
    assert "| h100 | [new-thing](benchmarks/results/h100_new-thing.json) | – |" in page


def test_rows_go_by_machine_then_what_and_a_dated_name_is_refused(tmp_path) -> None:
    keys = {"commit": None, "machine": None, "command": None, "versions": None, "x": 1}
    for name in ("h100_b", "cpu-2core_z", "h100_a"):
        (tmp_path / f"{name}.json").write_text(json.dumps(keys))
    page = render_results.render(render_results.load(tmp_path))
    assert [page.index(f"[{what}]") for what in ("z", "a", "b")] == sorted(page.index(f"[{what}]")
                                                                        for what in ("z", "a", "b"))
    day = "-".join(("2030", "01", "02"))
    (tmp_path / f"{day}_h100_c.json").write_text(json.dumps(keys))
    with pytest.raises(ValueError, match="MACHINE_WHAT"):
        render_results.load(tmp_path)


def test_the_script_runs_as_documented() -> None:
    result = subprocess.run([sys.executable, "benchmarks/render_results.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_fresh_held_out_result_shows_its_folds_and_sources(tmp_path) -> None:
    result = {"commit": None, "machine": None, "command": None, "versions": None, "model": "m.onnx",
              "quantize_fresh_held_out": {
                  "images": {"pool": {"coco": 100, "other": 63}, "fresh": {"photos": 30, "video_frames": 20}},
                  "options": ["--int8-target", "0.91"],
                  "inner_folds": {"t091": {"folds": [{"validation_map50_95": 0.96}, {"validation_map50_95": 0.93}]}},
                  "held_out": {"fidelity": {"map50_95": 0.9412, "reference_detections": 120},
                               "int8_conv_mac_share": 0.9101, "verdict": {"passed": True}},
                  "held_out_by_source": {"photos": {"map50_95": 0.95}, "video_frames": {"map50_95": 0.9}}}}
    (tmp_path / "cpu-2core_quantize-fresh.json").write_text(json.dumps(result))
    page = render_results.render(render_results.load(tmp_path))
    assert "## INT8 on images from outside the project" in page
    row = next(line for line in page.splitlines() if "quantize-fresh" in line)
    for cell in ("100 coco + 63 other", "t091: 0.960 / 0.930", "50 (120 boxes)", "0.941", "photos: 0.950",
                 "video_frames: 0.900", "0.910", "pass"):
        assert cell in row, cell

"""The acceptance run on the real yolox_nano (about a minute on two cores): calibrate on the first 50
images of calib/coco_val2017_100, evaluate on the other 50, fidelity >= 0.90 with >= 60 % of the
conv MACs in INT8. Needs ../shared. Opt-in for a developer's quick runs:
``STREAMD_SLOW_TESTS=1 python -m pytest -q tests/quantize/test_yolox_nano_slow.py``.

CI runs it (.ci/run sets STREAMD_SLOW_TESTS=1): it is the only test of quantization on a real
detector, and about two minutes on two busy cores leaves the suite well inside its budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streamd.quantize.cli import main
from tests.support import SHARED, YOLOX_NANO, require_shared

CALIB = SHARED / "calib" / "coco_val2017_100"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STREAMD_SLOW_TESTS") != "1", reason="opt-in: set STREAMD_SLOW_TESTS=1")
def test_yolox_nano_int8_meets_the_acceptance_target(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO, CALIB)
    code = main(["--onnx", str(YOLOX_NANO), "--calib", str(CALIB), "--output", str(tmp_path / "nano_int8.onnx"),
                 "--report", str(tmp_path / "report.json"), "--min-fidelity", "0.9", "--min-int8-share", "0.6"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0, report["verdict"]
    assert report["fidelity"]["map50_95"] >= 0.9 and report["fidelity"]["images"] == 50
    assert report["int8_conv_mac_share"] >= 0.6
    assert report["evaluation"]["held_out"] and report["calibration"]["images"] == 50

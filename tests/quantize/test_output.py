"""What ``streamd quantize`` writes when not on a terminal : progress lines while a phase
runs, no ONNX Runtime chatter, its own name in the usage line."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from streamd.quantize import qdq
from streamd.quantize.progress import LogWriter, progress
from tests.support import REPO


def test_progress_off_a_terminal_writes_lines_while_it_runs() -> None:
    out = io.StringIO()  # not a TTY
    seen = []
    for item in progress(range(4), 4, "sensitivity", stream=out, line_interval_seconds=0.0):
        seen.append(item)
        assert out.getvalue().count("\n") == len(seen) - 1  # a line per finished item, while it runs
    lines = out.getvalue().splitlines()
    assert seen == [0, 1, 2, 3]
    assert lines[:3] == ["sensitivity: 1/4 (25%) in " + lines[0].rsplit(" ", 1)[1],
                         "sensitivity: 2/4 (50%) in " + lines[1].rsplit(" ", 1)[1],
                         "sensitivity: 3/4 (75%) in " + lines[2].rsplit(" ", 1)[1]]
    assert lines[3].startswith("sensitivity: 4/4 in ")
    assert "\r" not in out.getvalue()


def test_log_writer_sends_printed_lines_to_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    writer = LogWriter(logging.getLogger("streamd.quantize.test"))
    with caplog.at_level(logging.DEBUG, logger="streamd.quantize.test"):
        print("Collecting tensor data and making histogram ...", file=writer)
        writer.write("partial")
        writer.flush()
    assert [r.getMessage() for r in caplog.records] == ["Collecting tensor data and making histogram ...", "partial"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.skipif(not qdq.calibration_cache_supported(), reason="INT8 calibration needs onnxruntime >= 1.24")
def test_quantize_piped_shows_progress_and_no_onnxruntime_chatter(tiny_conv_model: Path, image_folder: Path,
                                                                  tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "quantize", "--onnx", str(tiny_conv_model),
                             "--calib", str(image_folder), "--output", str(tmp_path / "model.onnx"),
                             "--calib-count", "12", "--eval-count", "12", "--search-count", "6",
                             "--method", "entropy", "--min-fidelity", "0", "--margin", "1"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    # (a goal of 1.0, so the search has to rank the layers.) The first item's line, before the phase ends:
    assert "sensitivity: 1/" in result.stderr
    for chatter in ("Collecting tensor data", "Finding optimal threshold", "Number of tensors"):
        assert chatter not in result.stdout + result.stderr


def test_quantize_help_names_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "quantize", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0 and result.stdout.startswith("usage: streamd quantize ")
    top = subprocess.run([sys.executable, "-m", "streamd", "--help"], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert "tools/quantize.py" not in top.stdout and "quantize" in top.stdout

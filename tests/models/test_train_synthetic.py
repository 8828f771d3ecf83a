"""tools/train_synthetic.py runs end to end (smoke mode; PyTorch is a training-only dependency)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_smoke_training_exports_a_model_the_decoder_accepts(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="training needs PyTorch (not a streamd dependency)")
    completed = subprocess.run([sys.executable, str(REPO / "tools" / "train_synthetic.py"), "--smoke",
                                "--workers", "1", "--out-dir", str(tmp_path)],
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (tmp_path / "synthetic_shapes.onnx").is_file()
    assert (tmp_path / "synthetic_shapes.names").read_text().split() == ["circle", "square", "triangle", "cross"]
    info = json.loads((tmp_path / "synthetic_shapes.json").read_text())
    assert info["input_size"] == 320 and info["steps"] == 4

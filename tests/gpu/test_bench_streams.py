"""``streamd bench --streams`` on the GPU path: NVDEC sources, the torch STAND-IN engine (``--standin-engine``)
in the batched GPU detector, the real daemon and a ZeroMQ subscriber; the JSON has the GPU's busy fraction.
Speed is not asserted (``--sweep`` measures it).

Needs PyNvVideoCodec, pyzmq, torch and ``STREAMD_H264_VIDEO`` (an H.264 file); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, YOLOX_NANO, require_shared

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
              for name in ("PyNvVideoCodec", "zmq", "torch")]
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")


def test_streams_bench_on_nvdec_and_the_standin_engine(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO)
    if not VIDEO or not Path(VIDEO).is_file():
        pytest.skip("set STREAMD_H264_VIDEO to an H.264 file")
    out = tmp_path / "streams.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--streams", "4", "--decoder", "nvdec",
                             "--standin-engine", "--model", str(YOLOX_NANO), "--video", VIDEO, "--seconds", "3",
                             "--warmup-seconds", "1", "--json", str(out), "--plot", str(tmp_path / "streams.png")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    (run,) = results["runs"]
    assert run["decoder"] == "nvdec" and run["max_batch"] == 4
    assert results["settings"]["backend"] == "tensorrt" and results["settings"]["standin_engine"]
    assert all(stream["messages"] > 0 for stream in run["per_stream"])
    assert run["batch_size"]["batches"] > 0
    if shutil.which("nvidia-smi") or importlib.util.find_spec("pynvml"):
        assert run["gpu_busy_fraction"] is not None and 0.0 <= run["gpu_busy_fraction"] <= 1.0
    assert results["machine"]["gpus"] or run["gpu_busy"]["method"] is None

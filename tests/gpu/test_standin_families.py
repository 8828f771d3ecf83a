"""The stand-in engine on the other families' graphs, on the GPU: YOLO26 end-to-end (TopK, GatherElements)
and RT-DETR-l (attention, GridSample). Each batch size's captured graph reproduces the eager run bit for
bit, and the output equals ONNX Runtime's on the CPU, row for row.

Random-weight exports: their scores sit close together, so TopK may order near-equal rows differently
on two platforms; each row is compared with its closest ONNX Runtime row of the same image.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gpu.test_batch_gpu import download, upload
from tests.support import REPO, SHARED

NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the stand-in engine needs torch")
RTDETR_SKELETON = REPO / "benchmarks" / "models" / "rtdetr-l.skeleton.onnx"
YOLO26N = SHARED / "models" / "ultralytics" / "yolo26n_end2end.onnx"


def model_path(name: str, tmp_path: Path) -> Path:
    if name == "yolo26n":
        if YOLO26N.is_file():
            return YOLO26N
        skeleton = YOLO26N.with_suffix(".skeleton.onnx")  # a GPU kit may carry it weightless
        if not skeleton.is_file():
            pytest.skip(f"{YOLO26N} is missing")
    else:
        skeleton = RTDETR_SKELETON
    restored = tmp_path / f"{name}.onnx"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "onnx_skeleton.py"), "restore", str(skeleton),
                    str(restored)], check=True, capture_output=True)
    return restored


def closest_row_difference(rows: np.ndarray, reference: np.ndarray) -> float:
    """Largest, over ``rows``, of the distance to the closest row of ``reference``: max over the columns of
    |difference| / (1 + |reference|), as boxes in pixels and scores in 0..1 share a row."""
    relative = np.abs(rows[:, None, :] - reference[None, :, :]) / (1 + np.abs(reference[None, :, :]))
    return float(relative.max(axis=2).min(axis=1).max())


@NEEDS_TORCH
@pytest.mark.parametrize("name", ["yolo26n", "rtdetr-l"])
def test_graph_replay_equals_eager_and_onnxruntime(name: str, tmp_path: Path) -> None:
    import onnxruntime

    from streamd.cuda import memory
    from streamd.cuda.stream import Stream
    from tests.gpu.standin_engine import TorchGraphEngine

    path = model_path(name, tmp_path)
    engine = TorchGraphEngine(path, max_batch=4)
    spec_in, spec_out = engine.inputs[0], engine.outputs[0]
    _, channels, height, width = spec_in.shape
    rows, columns = (int(d) for d in spec_out.shape[1:])
    images = np.random.default_rng(0).random((3, channels, height, width), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {spec_in.name: images[i:i + 1]})[0] for i in range(3)])
    device_in = upload(images)
    replayed = memory.DeviceBuffer(3 * rows * columns * 4)
    eager = memory.DeviceBuffer(3 * rows * columns * 4)
    stream = Stream()
    try:
        for batch in (1, 3):
            engine.set_input_shapes(engine.static_shapes(batch))
            for _ in range(2):  # the capture, then a replay
                engine.enqueue({spec_in.name: device_in.ptr, spec_out.name: replayed.ptr}, stream.ptr)
                stream.synchronize()
            engine.run_eager(device_in.ptr, eager.ptr, batch)
            graph_out = download(replayed.ptr, (batch, rows, columns), np.float32)
            np.testing.assert_array_equal(graph_out, download(eager.ptr, (batch, rows, columns), np.float32))
            assert np.isfinite(graph_out).all()
            for index in range(batch):
                assert closest_row_difference(graph_out[index], reference[index]) < 1e-3, (name, batch, index)
    finally:
        for buffer in (eager, replayed, device_in):
            buffer.free()
        stream.close()
        engine.close()

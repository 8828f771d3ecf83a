"""build_gpu_detector -> TensorRTEngine -> GpuDetector on a real GPU, with the
TensorRT STAND-IN module (not TensorRT) whose execute_async_v3 enqueues a fixed raw output on the
given stream. Checks the backend's real CUDA buffers, the layout probe and the pipeline's binding."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamd.config.schema import ModelConfig
from tests.gpu.support import assert_equal_to_cpu_decode
from tests.gpu.test_pipeline import FixedOutputEngine, frames
from tests.gpu.test_postprocess import CELLS, HEIGHT, WIDTH, synthetic_output
from tests.inference import tensorrt_standin as standin

IO = {"images": {"mode": "input", "shape": [1, 3, HEIGHT, WIDTH], "dtype": "FLOAT",
                 "profile": [[1, 3, HEIGHT, WIDTH]] * 3},
      "output": {"mode": "output", "shape": [1, CELLS, 85], "dtype": "FLOAT"}}


@pytest.fixture
def device_standin(monkeypatch):
    from streamd.cuda import memory

    raw = synthetic_output(11, 50)
    source = FixedOutputEngine(raw)  # holds the raw output in device memory
    original = standin.ExecutionContext.execute_async_v3

    def execute_on_device(self, stream_handle: int) -> bool:
        inputs_ready = all(n in self.shapes for n, s in self.engine.io.items() if s["mode"] == "input")
        if not isinstance(stream_handle, int) or not inputs_ready or set(self.addresses) != set(self.engine.io):
            return original(self, stream_handle)  # the stand-in's own refusal
        self.calls.append(("execute_async_v3", stream_handle))
        memory.copy_dtod_async(self.addresses["output"], source._source.ptr, raw.nbytes, stream_handle)
        return True

    monkeypatch.setattr(standin.ExecutionContext, "execute_async_v3", execute_on_device)
    monkeypatch.setitem(sys.modules, "tensorrt", standin.make_module("10.9.0"))
    yield raw
    source.close()


def test_build_gpu_detector_end_to_end(tmp_path: Path, device_standin) -> None:
    from streamd.gpu.build import build_gpu_detector

    raw = device_standin
    engine_path = tmp_path / "model.engine"
    engine_path.write_bytes(standin.serialize_engine(IO))
    model = ModelConfig(path=str(engine_path), classes=tuple(f"c{i}" for i in range(80)), backend="tensorrt",
                        score_threshold=0.3, nms_threshold=0.45, max_detections=300)
    detector = build_gpu_detector(model, "standin")
    results = []
    for frame in frames(6):
        results.extend(detector.submit(frame))
    results.extend(detector.drain())
    detector.close()
    assert [r.frame.index for r in results] == list(range(6))
    assert_equal_to_cpu_decode(results, raw, WIDTH, HEIGHT)

"""``streamd bench --standin-engine``: the GPU detector of backend ``tensorrt`` built on the torch stand-in
engine (``tests/gpu/standin_engine.py``: test code, in a checkout only; the real YOLOX computation
as CUDA graphs) where TensorRT is absent. Installed in ``streamd.inference.registry.DETECTOR_BUILDERS``
for the bench's runs only."""

from __future__ import annotations

from streamd.config.schema import ModelConfig
from streamd.errors import BackendError
from streamd.inference.detector import Detector
from streamd.inference.registry import BackendOptions


def open_standin_engine(options: BackendOptions):
    try:
        from tests.gpu.standin_engine import TorchGraphEngine  # noqa: PLC0415 - test code: a checkout, and torch
    except ImportError as error:
        raise BackendError("--standin-engine runs the torch stand-in engine (tests/gpu/standin_engine.py), test code "
                           "that is not installed: run `python -m streamd bench` from a source checkout, with torch "
                           f"({error})") from error

    return TorchGraphEngine(options.model_path, device=options.device,
                            max_batch=int(options.extra.get("max_batch", 1)))


def build_standin_detectors(model: ModelConfig, model_id: str, workers: int = 0, threads: int = 0) -> list[Detector]:
    """The registry entry's signature (see DETECTOR_BUILDERS); one GPU detector, as for TensorRT."""
    from streamd.gpu.build import build_gpu_detector  # noqa: PLC0415 - needs cuda-python

    return [build_gpu_detector(model, model_id, engine_opener=open_standin_engine)]


STANDIN_ENVIRONMENT = "STREAMD_BENCH_STANDIN_ENGINE"


def install_if_requested() -> None:
    """A ``streamd run`` started by ``streamd bench --workers --standin-engine`` (and its workers): backend
    ``tensorrt`` builds on the stand-in engine, as in the bench's own process."""
    import os  # noqa: PLC0415

    from streamd.inference.registry import DETECTOR_BUILDERS  # noqa: PLC0415

    if os.environ.get(STANDIN_ENVIRONMENT) == "1":
        DETECTOR_BUILDERS["tensorrt"] = "streamd.bench.standin:build_standin_detectors"

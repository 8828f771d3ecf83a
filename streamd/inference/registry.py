"""Backend registry: name -> loader, imported lazily so a missing optional dependency
(TensorRT, cuda-python) is a clear error when that backend is asked for, never at import time.
The names here are the allowed values wherever a backend is named (config, command lines)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamd.errors import BackendError
from streamd.inference.tensorrt_import import import_tensorrt

if TYPE_CHECKING:  # numpy-free at run time: config validation and --help read BACKEND_CHOICES
    from streamd.inference.base import InferenceBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendOptions:
    """What any backend may need to open a model; backends ignore what they do not use."""

    model_path: str
    threads: int = 0  # 0: the backend's default
    device: int = 0
    precision: str = "fp32"
    extra: dict[str, object] = field(default_factory=dict)


# Each backend name, with what opens it and what builds a daemon's detectors on it, as
# "module:function"; imported only when that backend is asked for (the GPU side, with TensorRT and
# cuda-python, is imported by name here and never by the host side's modules).
# - opener: BackendOptions -> an open InferenceBackend (numpy in, numpy out: check, bench, probes);
# - detectors: (ModelConfig, model id, workers, threads) -> the pipeline workers' Detectors (the host
#   detector around the backend for ONNX Runtime; the GPU detector, which opens its own engine, for TensorRT).
BACKENDS: dict[str, str] = {
    "onnxruntime": "streamd.inference.onnxruntime_backend:open_backend",
    "tensorrt": "streamd.inference.tensorrt_backend:open_backend",
}
DETECTOR_BUILDERS: dict[str, str] = {
    "onnxruntime": "streamd.inference.factory:build_host_detectors",
    "tensorrt": "streamd.gpu.build:build_gpu_detectors",
}
# What a config (model.backend) or a command line may name: a backend, or "auto" (TensorRT where
# it imports and a GPU is visible, else ONNX Runtime).
BACKEND_CHOICES: tuple[str, ...] = (*BACKENDS, "auto")


def _load(table: dict[str, str], name: str) -> Callable:
    try:
        target = table[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}', expected one of {sorted(table)} or 'auto'") from None
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f"backend '{name}' cannot be imported: {error}") from error
    return getattr(module, attribute)


def tensorrt_usable() -> bool:
    """TensorRT imports and a CUDA device is visible."""
    try:
        import_tensorrt()
        from streamd.cuda import runtime  # noqa: PLC0415 - optional dependency
        return runtime.device_count() > 0
    except Exception as error:  # any failure here means "not usable", reported in the log
        log.debug("TensorRT not usable: %s", error)
        return False


def resolve_backend_name(name: str) -> str:
    if name != "auto":
        return name
    chosen = "tensorrt" if tensorrt_usable() else "onnxruntime"
    log.info("backend 'auto' chose %s", chosen)
    return chosen


def open_backend(name: str, options: BackendOptions) -> InferenceBackend:
    opener: Callable[[BackendOptions], InferenceBackend] = _load(BACKENDS, resolve_backend_name(name))
    return opener(options)


def detector_builder(name: str) -> Callable:
    """The detector builder of backend ``name`` (already resolved: not 'auto'); see DETECTOR_BUILDERS."""
    return _load(DETECTOR_BUILDERS, name)

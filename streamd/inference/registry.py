"""Backend registry: name -> loader, imported lazily so a missing optional dependency
(TensorRT, cuda-python) is a clear error when that backend is asked for, never at import time."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from streamd.errors import BackendError
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


# name -> "module:factory"; a factory takes BackendOptions and returns an open InferenceBackend.
BACKENDS: dict[str, str] = {
    "onnxruntime": "streamd.inference.onnxruntime_backend:open_backend",
    "tensorrt": "streamd.inference.tensorrt_backend:open_backend",
}


def _factory(name: str) -> Callable[[BackendOptions], InferenceBackend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}', expected one of {sorted(BACKENDS)} or 'auto'") from None
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f"backend '{name}' cannot be imported: {error}") from error
    return getattr(module, attribute)


def tensorrt_usable() -> bool:
    """TensorRT imports and a CUDA device is visible."""
    try:
        importlib.import_module("tensorrt")
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
    return _factory(resolve_backend_name(name))(options)

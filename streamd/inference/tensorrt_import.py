"""The one place streamd imports TensorRT and reads its version: the daemon's backend, the engine
builder, the quantize tool's engine step and backend ``auto`` all come here.

TensorRT is optional: importing this module never imports it; :func:`import_tensorrt` does, and a
missing package (or a missing libnvinfer behind the bindings) is a BackendError saying so.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from streamd.errors import BackendError


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; BackendError (its cause: the ImportError) when it does not import."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as error:
        raise BackendError(f"backend 'tensorrt' needs the TensorRT Python package: {error}") from error


def major_version(trt: ModuleType) -> int:
    """TensorRT's major version (10, 11): what the network flags, fp16 and int8 paths depend on."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError as error:
        raise BackendError(f"cannot read the TensorRT major version from {trt.__version__!r}") from error

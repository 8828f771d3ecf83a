"""ONNX Runtime on the CPU: the default backend, and the one everything else is checked against."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streamd.errors import BackendError
from streamd.inference.base import InferenceBackend, TensorIO, TensorSpec
from streamd.inference.fold_preprocessing import fold_preprocessing
from streamd.inference.onnx_batch import make_batch_dynamic
from streamd.inference.registry import BackendOptions
from streamd.yolox.preprocess import Convention

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _spec(node) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))


def create_session(model: str | Path | bytes, threads: int = 0, quiet: bool = False, name: str | Path = ""):
    """An ``onnxruntime.InferenceSession`` on the CPU with every graph optimisation: the one place
    streamd creates one. ``threads`` 0: ONNX Runtime's default; ``quiet``: log errors only; ``name``:
    the model in the error message (for serialized ``model`` bytes)."""
    import onnxruntime as ort  # noqa: PLC0415 - keep `import streamd` light

    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        session_options.intra_op_num_threads = threads
    if quiet:
        session_options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=session_options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own Fail/InvalidGraph types
        raise BackendError(f"ONNX Runtime cannot load {name or model}: {error}") from error


class OnnxRuntimeBackend(TensorIO, InferenceBackend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 0, model_bytes: bytes | None = None,
                 quiet: bool = False) -> None:
        """``model_bytes``: a rewritten version of the model at ``model_path`` to load instead;
        ``quiet``: ONNX Runtime logs errors only (the quantize tool's many sessions)."""
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist")
        self._session = create_session(model_bytes or path, threads, quiet, name=path)
        self._inputs = [_spec(n) for n in self._session.get_inputs()]
        self._outputs = [_spec(n) for n in self._session.get_outputs()]
        self._output_names = [s.name for s in self._outputs]

    @property
    def session(self):
        """The underlying ``onnxruntime.InferenceSession`` (bench measures it raw)."""
        if self._session is None:
            raise BackendError("backend is closed")
        return self._session

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, results))

    def close(self) -> None:
        self._session = None


def open_backend(options: BackendOptions) -> OnnxRuntimeBackend:
    """``options.extra["fold_preprocessing"]``: a preprocessing Convention to fold into the graph
    (the backend then takes uint8 N x H x W x 3 canvases); skipped when the model does not allow it.
    ``options.extra["max_batch"]`` > 1: a model exported with a fixed batch of 1 gets a dynamic batch
    (streamd.inference.onnx_batch; BackendError names the node where that is not safe)."""
    model = None
    if int(options.extra.get("max_batch", 1)) > 1:
        model = make_batch_dynamic(load_onnx(options.model_path))
    model_bytes = None
    convention = options.extra.get("fold_preprocessing")
    if isinstance(convention, Convention):
        model_bytes = fold_preprocessing(options.model_path, convention, model)
    if model_bytes is None and model is not None:
        model_bytes = model.SerializeToString()
    return OnnxRuntimeBackend(options.model_path, options.threads, model_bytes)


def load_onnx(model_path: str | Path):
    """The ``onnx.ModelProto`` at ``model_path``; BackendError when it cannot be read."""
    import onnx  # noqa: PLC0415 - only the CPU backend needs it

    try:
        return onnx.load(str(model_path))
    except Exception as error:  # onnx raises DecodeError, OSError...
        raise BackendError(f"cannot read ONNX model {model_path}: {error}") from error

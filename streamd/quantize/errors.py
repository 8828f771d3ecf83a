"""Errors of the quantize tool, each mapped to an exit code by the CLI."""

from __future__ import annotations

from streamd.errors import StreamdError

# Exit codes of `tools/quantize.py` (argparse itself exits 2 on bad arguments).
EXIT_OK = 0
EXIT_FIDELITY_MISSED = 1
EXIT_BAD_INPUT = 2
EXIT_TENSORRT_UNAVAILABLE = 3
EXIT_ENGINE_BUILD_FAILED = 4


class QuantizeError(StreamdError):
    """Bad input to the quantize tool: unreadable model, empty calibration set, dynamic shapes."""

    exit_code = EXIT_BAD_INPUT


class TensorRTUnavailableError(QuantizeError):
    """An engine was asked for but `tensorrt` does not import here (the Q/DQ ONNX is still written)."""

    exit_code = EXIT_TENSORRT_UNAVAILABLE


class EngineBuildError(QuantizeError):
    """TensorRT was found but refused to parse or build the network."""

    exit_code = EXIT_ENGINE_BUILD_FAILED

"""What the GPU pipeline needs of an inference engine: enqueue on a stream, I/O at device addresses.

TensorRT's execution context is the real one (``streamd.inference.tensorrt_backend.TensorRTEngine``);
``tests/gpu/standin_engine.py`` (test code) is a torch stand-in to measure it where TensorRT is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from streamd.inference.base import TensorSpec


class DeviceEngine(Protocol):
    """Static-shape (batch 1) engine whose I/O live in device memory the caller owns."""

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def enqueue(self, addresses: Mapping[str, int], stream_ptr: int) -> None:
        """Enqueue one inference on ``stream_ptr`` reading/writing the tensors at ``addresses`` (by name).

        Returns as soon as the work is queued; must not synchronise the device or the stream.
        """

    def close(self) -> None: ...

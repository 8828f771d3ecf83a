"""The interface every inference backend implements.

A backend turns named input arrays into named output arrays and does nothing else: no
preprocessing, no decoding. Its I/O is described by name, shape and dtype, so callers never rely on
binding order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output. ``None`` in ``shape`` marks a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


def describe_io(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str:
    """``name: inputs images[1, 3, 416, 416]:float32 -> outputs ...``, for logs."""
    def fmt(specs: list[TensorSpec]) -> str:
        return ", ".join(f"{s.name}{list(s.shape)}:{np.dtype(s.dtype).name}" for s in specs)
    return f"{name}: inputs {fmt(inputs)} -> outputs {fmt(outputs)}"


class TensorIO:
    """``inputs`` and ``outputs`` read from the ``_inputs``/``_outputs`` a subclass sets when it opens."""

    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs


class InferenceBackend(ABC):
    """Open in ``__init__``; ``infer`` many times from one thread; ``close`` once (idempotent)."""

    name: str = "abstract"

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    @abstractmethod
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Returned arrays may be reused by the next call: copy what must outlive it."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        """One line for logs and ``streamd check``."""
        return describe_io(self.name, self.inputs, self.outputs)

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

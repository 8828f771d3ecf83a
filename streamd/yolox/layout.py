"""What a detector's tensors look like: its input size and which output layout it has (YOLOX, Ultralytics
anchor-free, NMS-free end-to-end, RT-DETR; ``streamd.yolox.decoders`` lists them).

The one place that reads them, for the host detector factory (``streamd.inference.factory``), the
GPU detector builder (``streamd.gpu.build``) and the quantize tool's fidelity report. Works on
anything with a ``name`` and a ``shape`` (``TensorSpec``, :class:`OutputInfo`); ``None`` in a shape
is a dynamic dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamd.errors import BackendError, ModelLayoutError
from streamd.yolox.postprocess import STRIDES


class TensorShape(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> tuple[int | None, ...]: ...


class InputShape(TensorShape, Protocol):
    @property
    def dtype(self) -> np.dtype: ...


@dataclass(frozen=True)
class OutputInfo:
    """What the layout detector needs to know of one model output."""

    name: str
    shape: tuple[int | None, ...]


def input_size(inputs: Sequence[InputShape], configured_width: int = 0, configured_height: int = 0
               ) -> tuple[int, int]:
    """(width, height): the model's static input size, checked against the configured one (0: not
    configured), or the configured one when the model's is dynamic. BackendError says what is wrong."""
    if len(inputs) != 1:
        raise BackendError(f"expected a model with one image input, got {[s.name for s in inputs]}")
    spec = inputs[0]
    shape = spec.shape
    if np.dtype(spec.dtype) == np.uint8 and len(shape) == 4 and shape[3] == 3:
        model_height, model_width = shape[1], shape[2]  # preprocessing folded in: NHWC
    elif len(shape) == 4 and shape[1] in (3, None):
        model_height, model_width = shape[2], shape[3]
    else:
        raise BackendError(f"expected an NCHW 3-channel image input, got {spec.name}{list(shape)}")
    if model_width is None or model_height is None:
        if not (configured_width and configured_height):
            raise BackendError("the model's input size is dynamic: set model.input_size = [width, height]")
        return configured_width, configured_height
    if configured_width and (configured_width, configured_height) != (model_width, model_height):
        raise BackendError(f"model.input_size {configured_width}x{configured_height} disagrees with the "
                           f"model's static input {model_width}x{model_height}")
    return model_width, model_height


def detect_layout(outputs: Sequence[TensorShape], input_width: int, input_height: int,
                  num_classes: int, strides: Sequence[int] = STRIDES, family: str = "",
                  end2end: bool | None = None) -> str:
    """The layout of the output shapes (a key of ``streamd.yolox.decoders.LAYOUTS``); raises
    ModelLayoutError naming the shapes it saw and the layouts it knows.

    ``family`` and ``end2end``: what the export's metadata says (``streamd.yolox.metadata``), "" and None
    when it says nothing. A single [B, N, 5+C] output is reported as ``yolox``; whether its boxes are
    already decoded is told by :func:`boxes_look_decoded` on a real output, since the shapes are the same.
    RT-DETR's [B, K, 6] has the shape of an end-to-end export: only the metadata (``family`` "rtdetr") tells.
    """
    cell_count = sum((input_height // s) * (input_width // s) for s in strides)
    channels = 5 + num_classes
    anchor_free = 4 + num_classes
    seen = ", ".join(f"{o.name}{list(o.shape)}" for o in outputs)
    ultralytics = family == "ultralytics"
    if family == "rtdetr" and len(outputs) == 1 and len(outputs[0].shape) == 3:
        # [B, K, 6]: the current exporter's own top-K (query, class) pairs; [B, K, 4+C]: earlier exporters'
        # every class score per query. A 2-class model of an earlier exporter needs model.layout set.
        if outputs[0].shape[2] == 6:
            return "rtdetr"
        if outputs[0].shape[2] == anchor_free:
            return "rtdetr-queries"
    if len(outputs) == 1 and len(outputs[0].shape) == 3:
        _, rows, width = outputs[0].shape
        if end2end and width == 6:
            return "end2end"
        if not ultralytics and width == channels and rows in (cell_count, None):
            return "yolox"
        if rows == anchor_free and (width in (cell_count, None) or (ultralytics and width != rows)):
            return "ultralytics"
        if width == anchor_free and (rows in (cell_count, None) or ultralytics):
            return "ultralytics-transposed"
        if width == 6 and ((rows is not None and rows != cell_count) or ultralytics):
            return "end2end"
    if len(outputs) == 3 and all(len(o.shape) == 4 for o in outputs):
        expected = sorted(((input_height // s), (input_width // s)) for s in strides)
        got = sorted((o.shape[2], o.shape[3]) for o in outputs)
        if all(o.shape[1] == channels for o in outputs) and got == expected:
            return "heads"
    raise ModelLayoutError(
        f"model outputs {seen} fit no YOLOX layout and no other layout streamd knows, for a "
        f"{input_width}x{input_height} input and {num_classes} classes: expected one [B, {cell_count}, {channels}] "
        f"tensor or three [B, {channels}, H, W] maps at strides {tuple(strides)} (YOLOX: layouts yolox, "
        f"yolox-decoded, heads), one [B, {anchor_free}, {cell_count}] or [B, {cell_count}, {anchor_free}] tensor "
        "(Ultralytics YOLOv5u/v8/11: ultralytics, ultralytics-transposed), one [B, K, 6] tensor (NMS-free "
        f"end-to-end exports: end2end; RT-DETR exports: rtdetr) or one [B, K, {anchor_free}] tensor of an RT-DETR "
        "export (rtdetr-queries); check model.classes and model.input_size, or set model.layout")


def boxes_look_decoded(output: np.ndarray) -> bool:
    """True when a [B, N, 5+C] output holds pixel boxes, not raw offsets.

    Raw x/y terms are offsets within a cell (|x| of order 1); decoded centres spread over the whole
    input, so their mean is hundreds of pixels. Any real input tells the two apart.
    """
    return float(np.mean(np.abs(output[0, :, 0]))) > 8.0


def resolve_layout(configured: str, outputs: Sequence[TensorShape], input_width: int, input_height: int,
                   num_classes: int, probe: Callable[[], np.ndarray] | None = None, family: str = "",
                   end2end: bool | None = None) -> str:
    """The layout to decode with: ``configured`` unless it is ``auto``, else read from the output
    shapes. ``yolox`` and ``yolox-decoded`` have the same shape: ``probe()`` returns the first output
    of one real inference (the callers run a grey frame) to tell them apart; without it, ``yolox``."""
    if configured != "auto":
        return configured
    layout = detect_layout(outputs, input_width, input_height, num_classes, family=family, end2end=end2end)
    if layout == "yolox" and probe is not None and boxes_look_decoded(probe()):
        layout = "yolox-decoded"
    return layout

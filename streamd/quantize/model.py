"""The float model as the tool sees it: loaded with clear errors, upgraded to opset 13 (per-channel
Q/DQ needs it), input size fixed, and the multiply-accumulate count of every Conv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference, version_converter

from streamd.quantize.errors import QuantizeError

# QuantizeLinear/DequantizeLinear gained the per-channel `axis` attribute in opset 13.
MIN_OPSET = 13


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the tool needs of the float model."""

    model: onnx.ModelProto
    input_name: str
    input_width: int
    input_height: int
    output_shapes: dict[str, tuple[int | None, ...]]
    conv_macs: dict[str, int]  # Conv node name -> MACs per image

    @property
    def total_conv_macs(self) -> int:
        return sum(self.conv_macs.values())


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def _fix_input_size(model: onnx.ModelProto, input_size: tuple[int, int] | None) -> tuple[str, int, int]:
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise QuantizeError(f"expected one image input, the model has {[i.name for i in graph_inputs]}")
    image_input = graph_inputs[0]
    dims = _dims(image_input)
    if len(dims) != 4:
        raise QuantizeError(f"input '{image_input.name}' has shape {dims}, expected N x 3 x H x W")
    height, width = dims[2], dims[3]
    if input_size is not None:
        width, height = input_size
    elif height is None or width is None:
        raise QuantizeError(f"input '{image_input.name}' has dynamic spatial dims {dims}: "
                            "pass --input-size WIDTHxHEIGHT")
    # Calibration and TensorRT want one static shape: batch 1, 3 channels, the chosen size.
    for dim, value in zip(image_input.type.tensor_type.shape.dim, (1, 3, height, width)):
        dim.Clear()
        dim.dim_value = value
    return image_input.name, int(width), int(height)


def _conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: _dims(v) for v in (*inferred.graph.value_info, *inferred.graph.output)}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    macs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        output_shape = shapes.get(node.output[0])
        weight_shape = weights.get(node.input[1])
        if not output_shape or None in output_shape or weight_shape is None:
            raise QuantizeError(f"cannot size Conv '{node.name}' (output {output_shape}, weight {weight_shape}); "
                                "is the input size static?")
        # out elements x (in channels per group x kernel area)
        macs[node.name] = int(np.prod(output_shape[1:]) * np.prod(weight_shape[1:]))
    return macs


def _name_nodes(model: onnx.ModelProto) -> None:
    # Exclusion lists and reports refer to nodes by name; give anonymous nodes stable ones.
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


def load_model(path: str | Path, input_size: tuple[int, int] | None = None) -> ModelInfo:
    """Load, check, upgrade and size the float model; every failure is a :class:`QuantizeError`."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"model {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises DecodeError, ValidationError, ...
        raise QuantizeError(f"cannot read {path} as an ONNX model: {error}") from error
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as error:
            raise QuantizeError(f"cannot upgrade {path} from opset {opset} to {MIN_OPSET}: {error}") from error
    _name_nodes(model)
    input_name, width, height = _fix_input_size(model, input_size)
    macs = _conv_macs(model)
    if not macs:
        raise QuantizeError(f"{path} has no Conv node: nothing to quantize")
    inferred = shape_inference.infer_shapes(model)
    outputs = {o.name: tuple(_dims(o)) for o in inferred.graph.output}
    return ModelInfo(model, input_name, width, height, outputs, macs)


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))

"""Give an ONNX model a dynamic batch dimension where its export fixed it to 1 (a graph edit, no retraining).

YOLOX's export tool writes batch 1 into the graph in two kinds of places: the input/output shapes
(and every intermediate ``value_info``), and the shape operands of the head's ``Reshape`` nodes
(``[1, 85, -1]`` for yolox_nano, one per stride). Every other operator is batch-agnostic. Setting a
Reshape's leading 1 to 0 ("copy this dimension from the input", ONNX's default ``allowzero = 0``)
keeps the batch the data has; the I/O and intermediate batch dims become the symbol ``batch``.
Outputs then equal the batch-1 model's frame by frame (checked with ONNX Runtime,
``tests/inference/test_onnx_batch.py``: max abs diff 0.0 on yolox_nano, N = 4).

An ``Expand`` is kept when its shape is a constant whose entry facing the input's first dim is 1
(ONNX broadcasts both ways, so a 1 there keeps the batch the data has) and its input is computed,
not a constant: YOLO26's end-to-end head expands its TopK indices with ``[1, 1, 80]`` and
``[1, 1, 4]``. A graph whose batch-1 constants are anywhere else (a Reshape whose shape is computed,
a Constant node that is not a Reshape shape, any other Expand, a Tile, a GatherElements with
constant indices) is refused with the node's name: this edit does not try to prove such graphs
batch-safe.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamd.errors import BackendError

log = logging.getLogger(__name__)

BATCH_SYMBOL = "batch"
# Operators whose result can hold the batch size as a value, not only as a shape: the edit cannot
# see batch-1 constants flowing into them, so a graph that has them is refused.
_BATCH_UNSAFE_OPS = ("Shape", "Tile", "ConstantOfShape", "Gather")


def _set_batch_dim(value_info, symbol: str) -> bool:
    """The leading dim of a tensor type made symbolic; False when it was not a static 1 (left as is)."""
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        return False
    first = dims[0]
    if first.WhichOneof("value") != "dim_value" or first.dim_value != 1:
        return False
    first.Clear()
    first.dim_param = symbol
    return True


def _ranks(model) -> dict[str, int]:
    """The rank of every value ONNX shape inference can tell (the model as exported, batch 1)."""
    import onnx  # noqa: PLC0415

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {info.name: len(info.type.tensor_type.shape.dim)
            for info in (*graph.input, *graph.value_info, *graph.output)
            if info.type.tensor_type.HasField("shape")}


def _check_expand(node, initializers, constants, ranks: dict[str, int]) -> None:
    """BackendError unless this Expand keeps the batch of its (computed) input: see the module's docstring."""
    from onnx import numpy_helper  # noqa: PLC0415

    name = node.name or node.output[0]
    data, shape_name = node.input[0], node.input[1]
    if data in initializers or data in constants:
        raise BackendError(f"cannot make the batch dynamic: Expand {name} expands a constant")
    if shape_name in initializers:
        shape = numpy_helper.to_array(initializers[shape_name])
    elif shape_name in constants:
        shape = numpy_helper.to_array(constants[shape_name].attribute[0].t)
    else:
        raise BackendError(f"cannot make the batch dynamic: Expand {name} takes a computed shape ({shape_name})")
    if data not in ranks:
        raise BackendError(f"cannot make the batch dynamic: the rank of Expand {name}'s input is unknown")
    facing = shape.size - ranks[data]  # the shape entry broadcast against the input's first dim
    if facing >= 0 and int(shape.reshape(-1)[facing]) != 1:
        raise BackendError(f"cannot make the batch dynamic: Expand {name} has shape {shape.tolist()}, whose entry "
                           "facing the batch is not 1")


def make_batch_dynamic(model):
    """A copy of ``model`` (an ``onnx.ModelProto``) whose batch dimension is dynamic.

    Raises BackendError naming the node when a batch-1 constant is found where the edit cannot
    prove it safe. A model whose inputs are already dynamic is returned unchanged (a copy).
    """
    import onnx  # noqa: PLC0415 - a runtime dependency, imported where used
    from onnx import numpy_helper  # noqa: PLC0415

    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    graph = edited.graph
    initializers = {t.name: t for t in graph.initializer}
    inputs = [t for t in graph.input if t.name not in initializers]
    if not inputs:
        raise BackendError("the ONNX model has no inputs to batch")
    if all(t.type.tensor_type.shape.dim and t.type.tensor_type.shape.dim[0].WhichOneof("value") == "dim_param"
           for t in inputs):
        return edited
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    ranks = None
    for node in graph.node:
        if node.op_type in _BATCH_UNSAFE_OPS:
            raise BackendError(f"cannot make the batch dynamic: node {node.name or node.output[0]} ({node.op_type}) "
                               "may compute with the batch size; export the model with a dynamic batch instead")
        if node.op_type == "GatherElements" and (node.input[1] in initializers or node.input[1] in constants):
            raise BackendError(f"cannot make the batch dynamic: GatherElements {node.name or node.output[0]} has "
                               "constant indices (they fix the batch of its output)")
        if node.op_type == "Expand":
            ranks = _ranks(edited) if ranks is None else ranks
            _check_expand(node, initializers, constants, ranks)
    edited_shapes = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in initializers:
            tensor = initializers[shape_name]
        elif shape_name in constants:
            tensor = constants[shape_name].attribute[0].t
        else:
            raise BackendError(f"cannot make the batch dynamic: Reshape {node.name} takes a computed shape "
                               f"({shape_name})")
        shape = numpy_helper.to_array(tensor)
        if shape.ndim != 1 or shape.size == 0 or shape[0] not in (0, 1, -1):
            raise BackendError(f"cannot make the batch dynamic: Reshape {node.name} has shape {shape.tolist()} "
                               "(its first dimension is not the batch)")
        if shape[0] == 1:
            if -1 in shape[1:] and any(v == 0 for v in shape[1:]):
                raise BackendError(f"Reshape {node.name} shape {shape.tolist()} mixes 0 and -1")
            fixed = np.array(shape, dtype=shape.dtype)
            fixed[0] = 0  # copy the batch from the input (allowzero defaults to 0)
            tensor.CopyFrom(numpy_helper.from_array(fixed, tensor.name))
            edited_shapes += 1
    changed = sum(_set_batch_dim(t, BATCH_SYMBOL) for t in (*inputs, *graph.output))
    for info in graph.value_info:
        _set_batch_dim(info, BATCH_SYMBOL)
    log.info("ONNX batch made dynamic: %d Reshape shapes and %d I/O tensors edited", edited_shapes, changed)
    return edited


def write_batch_dynamic(onnx_path: Path | str, destination: Path | str) -> Path:
    """``onnx_path`` with a dynamic batch, written to ``destination``; returns ``destination``."""
    import onnx  # noqa: PLC0415

    destination = Path(destination)
    model = make_batch_dynamic(onnx.load(str(onnx_path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(destination))
    return destination


def batch_dynamic_copy(onnx_path: Path | str, directory: Path | str) -> Path:
    """The batch-dynamic model in ``directory``, named after the original and its size (rewritten when
    the original changed since)."""
    source = Path(onnx_path)
    stat = source.stat()
    destination = Path(directory) / f"{source.stem}-batch-{stat.st_size}-{int(stat.st_mtime)}.onnx"
    if not destination.is_file():
        Path(directory).mkdir(parents=True, exist_ok=True)
        temporary = destination.with_suffix(".tmp.onnx")
        write_batch_dynamic(source, temporary)
        temporary.replace(destination)
    return destination

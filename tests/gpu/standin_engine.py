"""STAND-IN ENGINE (not TensorRT): the real computation of an ONNX detector, run by torch on the GPU.

TensorRT cannot be installed on the machines streamd is developed on, so the GPU pipeline is measured
with this engine instead. It honours the same contract as TensorRT's ``execute_async_v3``: it reads
the input and writes the output at device addresses the caller owns, enqueues on the caller's stream
and returns without synchronising. To keep host time per call small (as TensorRT's), the model is
captured once per address set into a CUDA graph and each ``enqueue`` is one graph replay.

The ONNX graph is interpreted by a small module covering the operators of YOLOX, Ultralytics YOLOv8 /
YOLO11, the YOLO26 end-to-end head and Ultralytics RT-DETR exports (``_operators``: each to ONNX's
semantics at the model's opset; any other operator or attribute raises BackendError naming it when the
model loads). Constant operands (slice bounds, shapes, scales) and whatever is computed from shapes
(Shape, Gather, Concat ... of a batch-dynamic export) are resolved at load time, the batch-dependent ones
as a linear function of the batch, which is what makes the forward capturable (onnx2torch's Slice copies
them to the host on every call). Needs torch and onnx.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streamd.cuda import driver
from streamd.errors import BackendError
from streamd.inference.base import TensorSpec

_ONNX_DTYPES = {1: np.float32, 10: np.float16}


class _DeviceArray:
    """Zero-copy view of caller-owned device memory for torch.as_tensor."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": np.dtype(dtype).str, "data": (ptr, False),
                                         "version": 3, "strides": None}


_TRACE_BATCHES = (1, 2, 3)  # a batch-dynamic model's shape arithmetic is traced at these batch sizes
_DIM_MAX = 2 ** 62  # Slice bounds beyond any dimension (ONNX writes INT64_MAX for "to the end")


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _scalar(value):
    array = np.asarray(value)
    if array.size != 1:
        raise BackendError(f"expected one value, got shape {list(array.shape)}")
    return array.reshape(-1)[0].item()


def _label(node) -> str:
    return f"{node.op_type} {node.name or node.output[0]}"


def _attributes(node, allowed: dict) -> dict:
    """``node``'s attributes over the defaults in ``allowed`` (bytes as str); BackendError naming any attribute
    ``allowed`` does not list."""
    import onnx  # noqa: PLC0415

    values = dict(allowed)
    for attribute in node.attribute:
        if attribute.name not in allowed:
            raise BackendError(f"attribute {attribute.name} of {_label(node)} is not supported by the stand-in "
                               "interpreter")
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _require(node, condition: bool, what: str) -> None:
    if not condition:
        raise BackendError(f"{_label(node)}: {what} is not supported by the stand-in interpreter")


def _nearest_source(index: int, scale: float, size_in: int, transform: str, rounding: str) -> int:
    """ONNX Resize (mode nearest): the input index output ``index`` reads along one axis."""
    if transform == "asymmetric":
        x = index / scale
    elif transform == "half_pixel":
        x = (index + 0.5) / scale - 0.5
    elif transform == "tf_half_pixel_for_nn":
        x = (index + 0.5) / scale
    else:
        raise BackendError(f"Resize coordinate_transformation_mode {transform} is not supported")
    if rounding == "floor":
        source = math.floor(x)
    elif rounding == "ceil":
        source = math.ceil(x)
    elif rounding == "round_prefer_floor":
        source = math.ceil(x - 0.5)
    elif rounding == "round_prefer_ceil":
        source = math.floor(x + 0.5)
    else:
        raise BackendError(f"Resize nearest_mode {rounding} is not supported")
    return min(max(source, 0), size_in - 1)


def _constant_value(node):
    """The value of an ONNX Constant node as a numpy array."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    if len(node.attribute) != 1:
        raise BackendError(f"{_label(node)} has {len(node.attribute)} attributes")
    attribute = node.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t)
    kinds = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    if attribute.name not in kinds:
        raise BackendError(f"Constant {node.name or node.output[0]} with {attribute.name} is not supported")
    return np.array(onnx.helper.get_attribute_value(attribute), dtype=kinds[attribute.name])


def _operators(torch, F):  # noqa: C901, N803, PLR0915 - one small builder per operator, flat on purpose
    """ONNX operator name -> builder(node, opset) -> (function, host positions).

    ``function(device, *inputs)`` computes the node with torch: tensors at data positions, numpy values at
    the host positions (shapes, axes, counts: what TensorRT needs at build time), ``None`` for an omitted
    optional input. It branches on shapes, dtypes and host values only, never on tensor data, so a forward is
    capturable. Anything it does not implement raises BackendError while the model is loaded: every node runs
    (on meta tensors) then.
    """
    dtypes = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
              9: torch.bool, 10: torch.float16, 11: torch.float64}
    builders = {}

    def register(*names):
        def wrap(builder):
            for name in names:
                builders[name] = builder
            return builder
        return wrap

    def plain(function, *, arity: int):
        def build(node, opset):
            _attributes(node, {})
            _require(node, len(node.input) == arity, f"{len(node.input)} inputs")
            return (lambda device, *inputs: function(*inputs)), ()
        return build

    def divide(a, b):
        return a / b if a.dtype.is_floating_point else torch.div(a, b, rounding_mode="trunc")

    for name, function in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": divide,
                           "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "And": torch.logical_and,
                           "Or": torch.logical_or, "Xor": torch.logical_xor, "MatMul": torch.matmul}.items():
        builders[name] = plain(function, arity=2)
    for name, function in {"Sigmoid": torch.sigmoid, "Relu": torch.relu, "Erf": torch.erf, "Log": torch.log,
                           "Exp": torch.exp, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs,
                           "Tanh": torch.tanh, "Not": torch.logical_not, "Identity": lambda x: x}.items():
        builders[name] = plain(function, arity=1)
    builders["Where"] = plain(torch.where, arity=3)

    @register("Mod")
    def _mod(node, opset):
        fmod = _attributes(node, {"fmod": 0})["fmod"]

        def mod(device, a, b):
            if fmod:
                return torch.fmod(a, b)
            _require(node, not a.dtype.is_floating_point, "Mod of floating-point values with fmod=0")
            return torch.remainder(a, b)  # the sign of the divisor, as fmod=0 asks
        return mod, ()

    @register("Cast")
    def _cast(node, opset):
        to = _attributes(node, {"to": None, "saturate": 1})["to"]
        _require(node, to in dtypes, f"cast to ONNX type {to}")
        dtype = dtypes[to]
        return (lambda device, x: x.to(dtype)), ()

    @register("Clip")
    def _clip(node, opset):
        if opset < 11:
            a = _attributes(node, {"min": None, "max": None})
            return (lambda device, x: torch.clamp(x, a["min"], a["max"])), ()
        _attributes(node, {})

        def clip(device, x, low=None, high=None):
            return torch.clamp(x, None if low is None else _scalar(low), None if high is None else _scalar(high))
        return clip, (1, 2)

    @register("Softmax")
    def _softmax(node, opset):
        axis = _attributes(node, {"axis": -1 if opset >= 13 else 1})["axis"]
        if opset >= 13:
            return (lambda device, x: torch.softmax(x, dim=axis)), ()

        def softmax(device, x):  # opset < 13: over all dims from ``axis`` on, as one
            start = axis % x.dim()
            return torch.softmax(x.reshape(*x.shape[:start], -1), dim=-1).reshape(x.shape)
        return softmax, ()

    @register("Conv")
    def _conv(node, opset):
        a = _attributes(node, {"auto_pad": "NOTSET", "dilations": (1, 1), "group": 1, "kernel_shape": None,
                               "pads": (0, 0, 0, 0), "strides": (1, 1)})
        _require(node, a["auto_pad"] == "NOTSET", f"auto_pad {a['auto_pad']}")
        _require(node, a["kernel_shape"] is None or len(a["kernel_shape"]) == 2, "a kernel that is not 2-D")
        pads = list(a["pads"])
        _require(node, len(pads) == 4, f"pads {pads}")
        symmetric = pads[:2] == pads[2:]
        widths = [pads[1], pads[3], pads[0], pads[2]]  # ONNX (top, left, bottom, right) as torch's pad order
        params = dict(stride=tuple(a["strides"]), padding=tuple(pads[:2]) if symmetric else (0, 0),
                      dilation=tuple(a["dilations"]), groups=a["group"])

        def conv(device, x, weight, bias=None):
            _require(node, x.dim() == 4, f"a {x.dim()}-D input")
            if not symmetric:  # zeros on the uneven sides first, as the convolution's own padding would add
                x = F.pad(x, widths)
            return F.conv2d(x, weight, bias, **params)
        return conv, ()

    @register("MaxPool")
    def _max_pool(node, opset):
        a = _attributes(node, {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": (1, 1), "kernel_shape": None,
                               "pads": (0, 0, 0, 0), "storage_order": 0, "strides": (1, 1)})
        _require(node, a["auto_pad"] == "NOTSET", f"auto_pad {a['auto_pad']}")
        _require(node, len(a["kernel_shape"]) == 2, "a kernel that is not 2-D")
        _require(node, len([o for o in node.output if o]) == 1, "the Indices output")
        pads = list(a["pads"])
        _require(node, pads[:2] == pads[2:], f"pads {pads}")
        params = dict(kernel_size=tuple(a["kernel_shape"]), stride=tuple(a["strides"]), padding=tuple(pads[:2]),
                      dilation=tuple(a["dilations"]), ceil_mode=bool(a["ceil_mode"]))
        return (lambda device, x: F.max_pool2d(x, **params)), ()

    @register("Resize")
    def _resize(node, opset):
        a = _attributes(node, {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                               "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75, "exclude_outside": 0,
                               "extrapolation_value": 0.0, "antialias": 0, "keep_aspect_ratio_policy": "stretch"})
        _require(node, a["mode"] == "nearest", f"mode {a['mode']}")
        _require(node, not a["antialias"] and not a["exclude_outside"], "antialias / exclude_outside")
        transform, rounding = a["coordinate_transformation_mode"], a["nearest_mode"]
        checked: set[tuple[int, float]] = set()

        def resize(device, x, *rest):
            scales = rest[0] if opset < 11 else (rest[1] if len(rest) > 1 else None)
            _require(node, scales is not None and np.asarray(scales).size == x.dim() == 4,
                     "Resize without 4 scales (sizes)")
            scales = [float(s) for s in np.asarray(scales).reshape(-1)]
            _require(node, scales[:2] == [1.0, 1.0], f"scales {scales}")
            for size, scale in zip(x.shape[2:], scales[2:]):
                # torch's nearest reads floor(index / scale): the ONNX mapping must be the same one
                if (size, scale) not in checked:
                    out = math.floor(size * scale)
                    _require(node, all(_nearest_source(i, scale, size, transform, rounding) ==
                                       min(math.floor(i / scale), size - 1) for i in range(out)),
                             f"coordinate_transformation_mode {transform} with nearest_mode {rounding} at scale "
                             f"{scale}")
                    checked.add((size, scale))
            return F.interpolate(x, scale_factor=tuple(scales[2:]), mode="nearest")
        return resize, (1, 2, 3) if opset >= 11 else (1,)

    @register("Reshape")
    def _reshape(node, opset):
        allow_zero = _attributes(node, {"allowzero": 0})["allowzero"]

        def reshape(device, x, shape):
            shape = _ints(shape)
            _require(node, not (allow_zero and 0 in shape), "allowzero=1 with a 0 in the shape")
            return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(shape)])  # 0: copy the dim
        return reshape, (1,)

    @register("Flatten")
    def _flatten(node, opset):
        axis = _attributes(node, {"axis": 1})["axis"]

        def flatten(device, x):
            split = axis % x.dim() if axis < 0 else axis
            return x.reshape(math.prod(x.shape[:split]), math.prod(x.shape[split:]))
        return flatten, ()

    @register("Transpose")
    def _transpose(node, opset):
        perm = _attributes(node, {"perm": None})["perm"]
        return (lambda device, x: x.permute(list(perm) if perm is not None else list(range(x.dim()))[::-1])), ()

    def axes_of(node, opset, since: int, extra: dict):
        """(attributes, host positions, axes reader) for ops whose axes became an input at ``since``."""
        if opset < since:
            a = _attributes(node, {"axes": None, **extra})
            return a, (), (lambda rest: a["axes"])
        a = _attributes(node, dict(extra))
        return a, (1,), (lambda rest: None if not rest or rest[0] is None else _ints(rest[0]))

    @register("Unsqueeze")
    def _unsqueeze(node, opset):
        _, host, read_axes = axes_of(node, opset, 13, {})

        def unsqueeze(device, x, *rest):
            axes = read_axes(rest)
            rank = x.dim() + len(axes)
            shape = list(x.shape)
            for axis in sorted(a % rank for a in axes):
                shape.insert(axis, 1)
            return x.reshape(shape)
        return unsqueeze, host

    @register("Squeeze")
    def _squeeze(node, opset):
        _, host, read_axes = axes_of(node, opset, 13, {})

        def squeeze(device, x, *rest):
            axes = read_axes(rest)
            _require(node, axes is not None, "Squeeze without axes")
            drop = {a % x.dim() for a in axes}
            _require(node, all(x.shape[a] == 1 for a in drop), f"squeezing a dim that is not 1 ({list(x.shape)})")
            return x.reshape([d for i, d in enumerate(x.shape) if i not in drop])
        return squeeze, host

    @register("Concat")
    def _concat(node, opset):
        axis = _attributes(node, {"axis": None})["axis"]
        return (lambda device, *xs: torch.cat(xs, dim=axis)), ()

    @register("Split")
    def _split(node, opset):
        a = _attributes(node, {"axis": 0, **({"split": None} if opset < 13 else {}),
                               **({"num_outputs": None} if opset >= 18 else {})})
        count = len(node.output)

        def split(device, x, sizes=None):
            sizes = a.get("split") if opset < 13 else (None if sizes is None else _ints(sizes))
            length = x.shape[a["axis"]]
            if sizes is None:
                if opset < 18:
                    _require(node, length % count == 0, f"an equal split of {length} in {count}")
                sizes = math.ceil(length / count)
            return torch.split(x, sizes, dim=a["axis"])
        return split, () if opset < 13 else (1,)

    @register("Slice")
    def _slice(node, opset):
        if opset < 10:
            a = _attributes(node, {"starts": None, "ends": None, "axes": None})
        else:
            _attributes(node, {})

        def slice_(device, x, starts=None, ends=None, axes=None, steps=None):
            if opset < 10:
                starts, ends, axes = a["starts"], a["ends"], a["axes"]
            starts, ends = _ints(starts), _ints(ends)
            axes = _ints(axes) if axes is not None else list(range(len(starts)))
            steps = _ints(steps) if steps is not None else [1] * len(starts)
            index = [slice(None)] * x.dim()
            for start, end, axis, step in zip(starts, ends, axes, steps):
                _require(node, step > 0, f"step {step}")
                size = x.shape[axis]
                first, last = (min(max(v + size if v < 0 else v, 0), size) for v in (start, min(end, _DIM_MAX)))
                index[axis % x.dim()] = slice(first, last, step)
            return x[tuple(index)]
        return slice_, () if opset < 10 else (1, 2, 3, 4)

    @register("Expand")
    def _expand(node, opset):
        _attributes(node, {})

        def expand(device, x, shape):  # ONNX broadcasting both ways: a 1 in ``shape`` keeps the input's dim
            return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))
        return expand, (1,)

    @register("Tile")
    def _tile(node, opset):
        _attributes(node, {})

        def tile(device, x, repeats):
            repeats = _ints(repeats)
            _require(node, len(repeats) == x.dim(), f"repeats {repeats} for a {x.dim()}-D input")
            return x.repeat(repeats)
        return tile, (1,)

    @register("Gather")
    def _gather(node, opset):
        axis = _attributes(node, {"axis": 0})["axis"]

        def gather(device, x, indices):
            dim = axis % x.dim()
            size = x.shape[dim]
            flat = indices.reshape(-1).long()
            flat = torch.where(flat < 0, flat + size, flat)  # negative indices count from the end
            return torch.index_select(x, dim, flat).reshape((*x.shape[:dim], *indices.shape, *x.shape[dim + 1:]))
        return gather, ()

    @register("GatherElements")
    def _gather_elements(node, opset):
        axis = _attributes(node, {"axis": 0})["axis"]

        def gather_elements(device, x, indices):
            dim = axis % x.dim()
            indices = indices.long()
            return torch.gather(x, dim, torch.where(indices < 0, indices + x.shape[dim], indices))
        return gather_elements, ()

    @register("TopK")
    def _top_k(node, opset):
        a = _attributes(node, {"axis": -1, "largest": 1, "sorted": 1})

        def top_k(device, x, k):
            # A stable sort: equal values keep the lower index first, as ONNX asks (torch.topk does not promise it).
            values, indices = torch.sort(x, dim=a["axis"], descending=bool(a["largest"]), stable=True)
            k = int(_scalar(k))
            return values.narrow(a["axis"], 0, k), indices.narrow(a["axis"], 0, k)
        return top_k, (1,)

    def reduce(function, since: int):
        def build(node, opset):
            a, host, read_axes = axes_of(node, opset, since, {"keepdims": 1, **(
                {"noop_with_empty_axes": 0} if opset >= since else {})})

            def reduce_(device, x, *rest):
                axes = read_axes(rest)
                if not axes:
                    if a.get("noop_with_empty_axes"):
                        return x
                    axes = list(range(x.dim()))
                return function(x, dim=tuple(v % x.dim() for v in axes), keepdim=bool(a["keepdims"]))
            return reduce_, host
        return build

    builders["ReduceMax"] = reduce(torch.amax, 18)
    builders["ReduceMin"] = reduce(torch.amin, 18)
    builders["ReduceMean"] = reduce(torch.mean, 18)
    builders["ReduceSum"] = reduce(torch.sum, 13)

    @register("Gemm")
    def _gemm(node, opset):
        a = _attributes(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})

        def gemm(device, x, y, c=None):
            x = x.t() if a["transA"] else x
            y = y.t() if a["transB"] else y
            if c is None:
                product = torch.mm(x, y)
                return product if a["alpha"] == 1.0 else product * a["alpha"]
            return torch.addmm(c, x, y, beta=a["beta"], alpha=a["alpha"])
        return gemm, ()

    @register("LayerNormalization")
    def _layer_norm(node, opset):
        a = _attributes(node, {"axis": -1, "epsilon": 1e-5, "stash_type": 1})
        _require(node, a["stash_type"] == 1, f"stash_type {a['stash_type']}")
        _require(node, len([o for o in node.output if o]) == 1, "the Mean / InvStdDev outputs")

        def layer_norm(device, x, scale, bias=None):
            shape = tuple(x.shape[a["axis"] % x.dim():])
            if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
                return F.layer_norm(x, shape, scale, bias, eps=a["epsilon"])
            normalised = F.layer_norm(x, shape, eps=a["epsilon"]) * scale
            return normalised if bias is None else normalised + bias
        return layer_norm, ()

    @register("GridSample")
    def _grid_sample(node, opset):
        a = _attributes(node, {"align_corners": 0, "mode": "bilinear" if opset < 20 else "linear",
                               "padding_mode": "zeros"})
        _require(node, a["mode"] in ("bilinear", "linear"), f"mode {a['mode']}")
        _require(node, a["padding_mode"] in ("zeros", "border", "reflection"), f"padding_mode {a['padding_mode']}")

        def grid_sample(device, x, grid):
            _require(node, x.dim() == 4, f"a {x.dim()}-D input")
            return F.grid_sample(x, grid, mode="bilinear", padding_mode=a["padding_mode"],
                                 align_corners=bool(a["align_corners"]))
        return grid_sample, ()

    @register("Pad")
    def _pad(node, opset):
        if opset < 11:
            a = _attributes(node, {"mode": "constant", "pads": None, "value": 0.0})
        else:
            a = _attributes(node, {"mode": "constant"})
        _require(node, a["mode"] == "constant", f"mode {a['mode']}")

        def pad(device, x, pads=None, value=None, axes=None):
            pads = a["pads"] if opset < 11 else _ints(pads)
            value = a["value"] if opset < 11 else (0 if value is None else _scalar(value))
            axes = [v % x.dim() for v in _ints(axes)] if axes is not None else list(range(x.dim()))
            _require(node, len(pads) == 2 * len(axes), f"pads {pads} for axes {axes}")
            begin = dict(zip(axes, pads[:len(axes)]))
            end = dict(zip(axes, pads[len(axes):]))
            widths = []
            for axis in reversed(range(x.dim())):  # torch: (begin, end) pairs from the last dim backwards
                widths += [begin.get(axis, 0), end.get(axis, 0)]
            return F.pad(x, widths, mode="constant", value=value)
        return pad, () if opset < 11 else (1, 2, 3)

    @register("Range")
    def _range(node, opset):
        _attributes(node, {})

        def range_(device, start, limit, delta):
            dtype = torch.from_numpy(np.zeros(1, np.asarray(start).dtype)).dtype
            return torch.arange(_scalar(start), _scalar(limit), _scalar(delta), dtype=dtype, device=device)
        return range_, (0, 1, 2)

    @register("ConstantOfShape")
    def _constant_of_shape(node, opset):
        from onnx import numpy_helper  # noqa: PLC0415

        value = _attributes(node, {"value": None})["value"]
        fill = np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value).reshape(-1)
        dtype = torch.from_numpy(fill).dtype

        def constant_of_shape(device, shape):
            return torch.full(_ints(shape), fill[0].item(), dtype=dtype, device=device)
        return constant_of_shape, (0,)

    return builders


def _interpreter_class():  # noqa: C901 - the interpreter's build pass, one place
    import torch  # noqa: PLC0415 - optional, GPU machines only
    import torch.nn.functional as F  # noqa: N812, PLC0415

    operators = _operators(torch, F)
    elem_types = {1: torch.float32, 10: torch.float16}

    def to_torch(value: np.ndarray):
        return torch.from_numpy(np.array(value))

    class OnnxInterpreter(torch.nn.Module):
        """Runs the ONNX node list with torch ops.

        Loading folds every node whose inputs are constants or shapes (Shape of a computed value reads its
        traced shape) into a value known on the host; a batch-dynamic model (input dim 0 not fixed) is traced
        at batch 1, 2 and 3, and a folded value that changes with the batch must be linear in it (a batch
        size, 8 x batch, ...): it is evaluated from the input's batch at each forward. The forward only runs
        the nodes that compute on the image, with every shape-like operand a Python value.
        """

        def __init__(self, model) -> None:
            """``model``: an ONNX file or an already loaded ``onnx.ModelProto``."""
            super().__init__()
            import onnx  # noqa: PLC0415
            from onnx import numpy_helper  # noqa: PLC0415

            if not isinstance(model, onnx.ModelProto):
                model = onnx.load(str(model))
            graph = model.graph
            opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
            if "ai.onnx" not in opsets:
                raise BackendError("the ONNX model imports no ai.onnx opset")
            opset = opsets["ai.onnx"]
            initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
            inputs = [i for i in graph.input if i.name not in initializers]
            if len(inputs) != 1:
                raise BackendError(f"the stand-in interpreter runs models with one input, not {len(inputs)}")
            self.input_name = inputs[0].name
            self.output_names = [o.name for o in graph.output]
            input_type = inputs[0].type.tensor_type
            dims = [d.dim_value if d.WhichOneof("value") == "dim_value" else None for d in input_type.shape.dim]
            if not dims or any(d is None for d in dims[1:]) or input_type.elem_type not in elem_types:
                raise BackendError(f"input {self.input_name}: only float inputs with a fixed shape but for the "
                                   "batch are supported")
            batches = _TRACE_BATCHES if dims[0] is None else (dims[0],)
            self._tensors = torch.nn.ParameterDict()
            self._names: dict[str, str] = {}
            self.steps: list[tuple] = []
            # Per traced batch: the values known on the host, and the meta tensors of those computed at run time.
            known = [dict(initializers) for _ in batches]
            traced = [{self.input_name: torch.empty((batch, *dims[1:]), dtype=elem_types[input_type.elem_type],
                                                    device="meta")} for batch in batches]
            meta_constants: dict[str, object] = {}
            for node in graph.node:
                if node.domain not in ("", "ai.onnx"):
                    raise BackendError(f"{_label(node)} of domain {node.domain} is not supported by the stand-in "
                                       "interpreter")
                if node.op_type == "Constant":
                    value = _constant_value(node)
                    for values in known:
                        values[node.output[0]] = value
                    continue
                if node.op_type == "Shape":
                    bounds = _attributes(node, {"start": 0, "end": None})
                    for values, tensors in zip(known, traced):
                        source = node.input[0]
                        shape = tensors[source].shape if source in tensors else values[source].shape
                        values[node.output[0]] = np.array(list(shape)[bounds["start"]:bounds["end"]], np.int64)
                    continue
                if node.op_type not in operators:
                    raise BackendError(f"ONNX operator {node.op_type} ({node.name}) is not supported by the "
                                       "stand-in interpreter")
                function, host = operators[node.op_type](node, opset)
                names = list(node.input)
                for position, name in enumerate(names):
                    if name and name not in known[0] and name not in traced[0]:
                        raise BackendError(f"{_label(node)}: input {name} is not computed before it")
                    if position in host and name in traced[0]:
                        raise BackendError(f"{_label(node)}: input {position} ({name}) is computed from the image "
                                           "at run time; the stand-in needs it known when the model loads")
                outputs = tuple(node.output)
                if not any(name in traced[0] for name in names):
                    results = []
                    for values in known:
                        args = [None if not name else values[name] if position in host else to_torch(values[name])
                                for position, name in enumerate(names)]
                        result = function("cpu", *args)
                        results.append([r.numpy() for r in (result if isinstance(result, tuple) else (result,))])
                    if all(len({r[i].shape for r in results}) == 1 for i in range(len(outputs))):
                        for values, result in zip(known, results):  # folded: the forward never runs it
                            for name, value in zip(outputs, result):
                                if name:
                                    values[name] = value
                        continue
                    # Its output's shape follows the batch (Range(0, batch)): computed at run time.
                specs = []
                for position, name in enumerate(names):
                    if not name:
                        specs.append(("none",))
                    elif name in traced[0]:
                        specs.append(("value", name))
                    elif position in host:
                        specs.append(self._host_spec(node, name, [values[name] for values in known], batches))
                    else:
                        value = known[0][name]
                        if any(not np.array_equal(values[name], value) for values in known[1:]):
                            raise BackendError(f"{_label(node)}: input {name} changes with the batch size and is "
                                               "read as data; the stand-in keeps such values as shapes only")
                        specs.append(("const", self._tensor(name, value)))
                        meta_constants.setdefault(name, to_torch(value).to("meta"))
                for values, tensors in zip(known, traced):
                    args = []
                    for spec, name in zip(specs, names):
                        if spec[0] == "value":
                            args.append(tensors[name])
                        elif spec[0] == "const":
                            args.append(meta_constants[name])
                        elif spec[0] == "none":
                            args.append(None)
                        else:
                            args.append(values[name])
                    result = function("meta", *args)
                    for name, value in zip(outputs, result if isinstance(result, tuple) else (result,)):
                        if name:
                            tensors[name] = value
                self.steps.append((function, tuple(specs), outputs))
            for name in self.output_names:
                if name not in traced[0]:
                    raise BackendError(f"output {name} does not depend on the input")
            # Per step, the values it reads for the last time (or writes and nobody reads): dropped right after
            # it, so a forward holds its working set, not every activation at once (as TensorRT reuses
            # activation memory). Holding them all cost 126 MB an image: the daemon's warm-up captures every
            # batch size (1..max_batch, per in-flight buffer set), and three daemons at max_batch 32 ran out of
            # an H200's 140 GB.
            last_use: dict[str, int] = {}
            for index, (_, specs, outputs) in enumerate(self.steps):
                for name in outputs:
                    if name:
                        last_use[name] = index
                for spec in specs:
                    if spec[0] == "value":
                        last_use[spec[1]] = index
            keep = {self.input_name, *self.output_names}
            self.release_after: list[tuple[str, ...]] = [() for _ in self.steps]
            for name, index in last_use.items():
                if name not in keep:
                    self.release_after[index] += (name,)

        @staticmethod
        def _host_spec(node, name: str, values: list, batches: tuple[int, ...]) -> tuple:
            """A host operand: ("host", value), or ("batch", base, slope) for base + slope x batch."""
            first = values[0]
            if all(np.array_equal(v, first) for v in values[1:]):
                return ("host", first)
            if (all(v.shape == first.shape for v in values) and first.dtype.kind in "iuf"
                    and len(values) > 2):
                slope = (values[1] - first) // (batches[1] - batches[0])
                base = first - slope * batches[0]
                if all(np.array_equal(v, base + slope * batch) for v, batch in zip(values, batches)):
                    return ("batch", base, slope)
            raise BackendError(f"{_label(node)}: input {name} changes with the batch size in a way the stand-in "
                               f"does not model ({[v.tolist() for v in values]} at batch {list(batches)})")

        def _tensor(self, name: str, value: np.ndarray) -> str:
            if name not in self._names:
                key = f"c{len(self._names)}"
                self._tensors[key] = torch.nn.Parameter(to_torch(value), requires_grad=False)
                self._names[name] = key
            return self._names[name]

        def forward(self, images):
            values = {self.input_name: images}
            batch = images.shape[0]
            device = images.device
            tensors = self._tensors
            for (function, specs, outputs), release in zip(self.steps, self.release_after):
                args = []
                for spec in specs:
                    kind = spec[0]
                    if kind == "value":
                        args.append(values[spec[1]])
                    elif kind == "const":
                        args.append(tensors[spec[1]])
                    elif kind == "host":
                        args.append(spec[1])
                    elif kind == "batch":
                        args.append(spec[1] + spec[2] * batch)
                    else:
                        args.append(None)
                result = function(device, *args)
                if len(outputs) == 1:
                    values[outputs[0]] = result
                else:
                    for name, value in zip(outputs, result):
                        if name:
                            values[name] = value
                for name in release:
                    del values[name]
            return values[self.output_names[0]]

    return OnnxInterpreter


class TorchGraphEngine:
    """STAND-IN for a TensorRT execution context: ``enqueue(addresses, stream_ptr)`` = one graph replay.

    ``max_batch > 1``: the ONNX batch dimension is made dynamic (``streamd.inference.onnx_batch``)
    and, as with TensorRT, ``set_input_shapes({name: (n, 3, H, W)})`` picks the batch the next
    ``enqueue`` runs; one graph is captured per (batch size, input address, output address).
    """

    def __init__(self, onnx_path: str | Path, device: int = 0, max_batch: int = 1) -> None:
        import onnx  # noqa: PLC0415
        import torch  # noqa: PLC0415

        if max_batch < 1:
            raise BackendError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch

        self._torch = torch
        # Exact float32 convolutions and fixed algorithms: results must not drift between runs.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        self._device = torch.device("cuda", device)
        self._graph_launch = driver.function("cuGraphLaunch")
        model = onnx.load(str(onnx_path))
        if max_batch > 1:
            from streamd.inference.onnx_batch import make_batch_dynamic  # noqa: PLC0415

            model = make_batch_dynamic(model)
        self.module = _interpreter_class()(model).to(self._device).eval()
        graph = model.graph
        tensor_type = graph.input[0].type.tensor_type
        dims = tuple(int(d.dim_value) if d.WhichOneof("value") == "dim_value" else None
                     for d in tensor_type.shape.dim)
        if any(d is None for d in dims[1:]):
            raise BackendError(f"stand-in engine: input {graph.input[0].name} {list(dims)} has dynamic non-batch dims")
        self.dynamic_batch = dims[0] is None
        self._inputs = [TensorSpec(graph.input[0].name, dims, np.dtype(_ONNX_DTYPES[tensor_type.elem_type]))]
        self._batch = 1
        with torch.no_grad():
            probe = self.module(torch.zeros((1, *dims[1:]), device=self._device))
        torch.cuda.synchronize(self._device)
        output_dims = (None, *probe.shape[1:]) if self.dynamic_batch else tuple(probe.shape)
        self._outputs = [TensorSpec(self.module.output_names[0], output_dims, np.dtype(np.float32))]
        self._graphs: dict[tuple[int, int, int], object] = {}
        # Per (batch, addresses): the graph's cudaGraphExec_t, launched with one driver call (what TensorRT's
        # execute_async_v3 costs the host), or None where this torch cannot hand it out.
        self._execs: dict[tuple[int, int, int], int | None] = {}
        self._streams: dict[int, object] = {}
        self._pool = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def batch(self) -> int:
        """The batch the next ``enqueue`` runs."""
        return self._batch

    def static_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Input shapes for ``batch`` frames (TensorRTEngine's method of the same name)."""
        spec = self._inputs[0]
        return {spec.name: (batch, *spec.shape[1:])}

    def set_input_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Choose the batch of the next ``enqueue``; returns the output shapes (as TensorRT's context does)."""
        spec = self._inputs[0]
        if spec.name not in shapes:
            raise BackendError(f"no shape given for stand-in input '{spec.name}'")
        shape = tuple(int(d) for d in shapes[spec.name])
        batch = shape[0]
        if shape[1:] != tuple(spec.shape[1:]) or not 1 <= batch <= (self.max_batch if self.dynamic_batch else 1):
            raise BackendError(f"stand-in set_input_shape('{spec.name}', {shape}) is outside 1..{self.max_batch} x "
                               f"{list(spec.shape[1:])}")
        self._batch = batch
        return {self._outputs[0].name: (batch, *self._outputs[0].shape[1:])}

    def _view(self, ptr: int, spec: TensorSpec, batch: int = 1):
        shape = (batch, *spec.shape[1:]) if spec.shape[0] is None else spec.shape
        return self._torch.as_tensor(_DeviceArray(ptr, shape, spec.dtype), device=self._device)

    def _capture(self, batch: int, input_ptr: int, output_ptr: int):
        # torch.cuda.graph captures on a stream of torch's current device: make it this engine's (model.device).
        with self._torch.cuda.device(self._device):
            return self._capture_on_device(batch, input_ptr, output_ptr)

    def _capture_on_device(self, batch: int, input_ptr: int, output_ptr: int):
        torch = self._torch
        images = self._view(input_ptr, self._inputs[0], batch)
        destination = self._view(output_ptr, self._outputs[0], batch)
        side = torch.cuda.Stream(self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside capture: cuDNN handles and workspaces
                self.module(images)
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a detector swapped in by a reload captures while NVDEC capture threads keep working on the
        # same device; only this thread's calls are checked against the capture (the 20-minute GPU soak's 40
        # detector swaps beside running NVDEC sources all captured so).
        # stream=side: without it torch captures on its process-wide default capture stream, made once on
        # whichever device was current at the first capture: an engine on GPU 1 after one on GPU 0 in the same
        # process then captured on a GPU 0 stream ("operation not permitted when stream is capturing" in
        # tests/gpu/test_daemon_nvdec.py[1]). The warm-up's stream also has cuDNN's workspace for the capture.
        with torch.no_grad(), torch.cuda.graph(graph, pool=self._pool, stream=side, capture_error_mode="thread_local"):
            destination.copy_(self.module(images))
        self._pool = graph.pool()
        return graph

    def enqueue(self, addresses: Mapping[str, int], stream_ptr: int) -> None:
        key = (self._batch, addresses[self._inputs[0].name], addresses[self._outputs[0].name])
        graph_exec = self._execs.get(key)
        if graph_exec is not None:
            # torch's replay() would need the stream made current (a context manager, a device-index
            # lookup, two stream switches) only to call cudaGraphLaunch on it: call that directly.
            code = self._graph_launch(graph_exec, stream_ptr)
            if code:
                driver.fail(code, "cuGraphLaunch(stand-in engine)")
            return
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._capture(*key)
            raw_exec = getattr(graph, "raw_cuda_graph_exec", None)  # torch >= 2.7
            self._execs[key] = int(raw_exec()) if raw_exec is not None else None
            if self._execs[key] is not None:
                self.enqueue(addresses, stream_ptr)
                return
        stream = self._streams.get(stream_ptr)
        if stream is None:
            stream = self._streams[stream_ptr] = self._torch.cuda.ExternalStream(stream_ptr, device=self._device)
        with self._torch.cuda.device(self._device), self._torch.cuda.stream(stream):
            graph.replay()

    def run_eager(self, input_ptr: int, output_ptr: int, batch: int = 1) -> None:
        """Uncaptured reference run (synchronises): the graph must reproduce it exactly."""
        torch = self._torch
        with torch.no_grad():
            self._view(output_ptr, self._outputs[0], batch).copy_(
                self.module(self._view(input_ptr, self._inputs[0], batch)))
        torch.cuda.synchronize(self._device)

    def close(self) -> None:
        self._execs.clear()
        self._graphs.clear()
        self._streams.clear()
        self._pool = None
        self.module = None
        # A destroyed graph's private memory pool stays reserved in torch's caching allocator until
        # empty_cache (the next engine's graphs get a new pool): without this every detector swap of a
        # reload kept the old engine's activations. TensorRT frees an engine's memory when it is destroyed.
        with self._torch.cuda.device(self._device):
            self._torch.cuda.empty_cache()

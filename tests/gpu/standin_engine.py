"""STAND-IN ENGINE (not TensorRT): the real YOLOX computation of an ONNX model, run by torch on the GPU.

TensorRT cannot be installed on the machines streamd is developed on, so the GPU pipeline is measured
with this engine instead. It honours the same contract as TensorRT's ``execute_async_v3``: it reads
the input and writes the output at device addresses the caller owns, enqueues on the caller's stream
and returns without synchronising. To keep host time per call small (as TensorRT's), the model is
captured once per address set into a CUDA graph and each ``enqueue`` is one graph replay.

The ONNX graph is interpreted by a small module covering the operators YOLOX and Ultralytics YOLOv8 /
YOLO11 exports use; constant
operands (slice bounds, shapes, scales) are resolved at load time, which is what makes the forward
capturable (onnx2torch's Slice copies them to the host on every call). Needs torch and onnx.
"""

from __future__ import annotations

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


def _value_inputs(step: tuple) -> list[str]:
    """The names of the computed values (not constants) an interpreter step reads."""
    op = step[0]
    if op in _BINARY_OPS:
        return [spec[1] for spec in step[1:3] if spec[0] == "value"]
    if op == "Concat":
        return list(step[1])
    return [step[1]]  # Conv, Sigmoid, Slice, MaxPool, Resize, Reshape, Transpose, Split, Softmax: one value input


_BINARY_OPS = ("Mul", "Add", "Sub", "Div")


def _interpreter_class():
    import torch  # noqa: PLC0415 - optional, GPU machines only
    import torch.nn.functional as F  # noqa: N812, PLC0415

    class OnnxInterpreter(torch.nn.Module):
        """Runs the ONNX node list with torch ops; every constant operand is a Python value."""

        def __init__(self, model) -> None:
            """``model``: an ONNX file or an already loaded ``onnx.ModelProto``."""
            super().__init__()
            import onnx  # noqa: PLC0415
            from onnx import numpy_helper  # noqa: PLC0415

            if not isinstance(model, onnx.ModelProto):
                model = onnx.load(str(model))
            graph = model.graph
            constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
            for node in graph.node:
                if node.op_type == "Constant":
                    constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            self.input_name = graph.input[0].name
            self.output_names = [o.name for o in graph.output]
            self._tensors = torch.nn.ParameterDict()
            self._names: dict[str, str] = {}
            self.steps: list[tuple] = []
            for node in graph.node:
                if node.op_type == "Constant":
                    continue
                attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                self.steps.append(self._step(node, attributes, constants))
            # Per step, the values it reads for the last time: dropped right after it, so a forward holds its
            # working set, not every activation at once (as TensorRT reuses activation memory). Holding them all
            # cost 126 MB an image: the daemon's warm-up captures every batch size (1..max_batch, per in-flight
            # buffer set), and three daemons at max_batch 32 ran out of an H200's 140 GB.
            last_read: dict[str, int] = {}
            for index, step in enumerate(self.steps):
                for name in _value_inputs(step):
                    last_read[name] = index
            keep = {self.input_name, *self.output_names}
            self.release_after: list[tuple[str, ...]] = [() for _ in self.steps]
            for name, index in last_read.items():
                if name not in keep:
                    self.release_after[index] += (name,)

        def _tensor(self, name: str, value: np.ndarray) -> str:
            if name not in self._names:
                key = f"c{len(self._names)}"
                self._tensors[key] = torch.nn.Parameter(torch.from_numpy(np.array(value)), requires_grad=False)
                self._names[name] = key
            return self._names[name]

        def _operand(self, name: str, constants: dict) -> tuple[str, str]:
            return ("const", self._tensor(name, constants[name])) if name in constants else ("value", name)

        def _step(self, node, attributes: dict, constants: dict) -> tuple:
            op, inputs, output = node.op_type, list(node.input), node.output[0]
            if op == "Conv":
                pads = attributes.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    raise BackendError(f"asymmetric Conv pads {pads} in {node.name} are not supported")
                params = dict(stride=tuple(attributes.get("strides", (1, 1))), padding=tuple(pads[:2]),
                              dilation=tuple(attributes.get("dilations", (1, 1))), groups=attributes.get("group", 1))
                bias = self._tensor(inputs[2], constants[inputs[2]]) if len(inputs) > 2 else None
                return ("Conv", inputs[0], self._tensor(inputs[1], constants[inputs[1]]), bias, params, output)
            if op in _BINARY_OPS:
                return (op, self._operand(inputs[0], constants), self._operand(inputs[1], constants), output)
            if op == "Sigmoid":
                return (op, inputs[0], output)
            if op == "Softmax":
                return (op, inputs[0], int(attributes.get("axis", -1)), output)
            if op == "Split":  # opset 13+: sizes as an input; the step names every output
                sizes = [int(v) for v in constants[inputs[1]]]
                return (op, inputs[0], (sizes, int(attributes.get("axis", 0))), tuple(node.output))
            if op == "Concat":
                return (op, inputs, attributes["axis"], output)
            if op == "Slice":
                starts, ends = constants[inputs[1]], constants[inputs[2]]
                axes = constants[inputs[3]] if len(inputs) > 3 and inputs[3] else np.arange(len(starts))
                steps = constants[inputs[4]] if len(inputs) > 4 and inputs[4] else np.ones(len(starts), np.int64)
                index = [slice(None)] * (int(max(axes)) + 1)
                for start, end, axis, step in zip(starts, ends, axes, steps):
                    index[int(axis)] = slice(int(start), int(min(end, 2 ** 31)), int(step))
                return (op, inputs[0], tuple(index), output)
            if op == "MaxPool":
                pads = attributes.get("pads", [0, 0, 0, 0])
                return (op, inputs[0], dict(kernel_size=tuple(attributes["kernel_shape"]),
                                            stride=tuple(attributes.get("strides", (1, 1))),
                                            padding=tuple(pads[:2]), ceil_mode=bool(attributes.get("ceil_mode", 0))),
                        output)
            if op == "Resize":
                if attributes.get("mode", b"nearest") != b"nearest":
                    raise BackendError(f"Resize mode {attributes.get('mode')} in {node.name} is not supported")
                scales = constants[inputs[2]]
                return (op, inputs[0], (float(scales[2]), float(scales[3])), output)
            if op == "Reshape":
                return (op, inputs[0], [int(v) for v in constants[inputs[1]]], output)
            if op == "Transpose":
                return (op, inputs[0], list(attributes["perm"]), output)
            raise BackendError(f"ONNX operator {op} ({node.name}) is not supported by the stand-in interpreter")

        def forward(self, images):  # noqa: C901 - one branch per operator, flat on purpose
            values = {self.input_name: images}
            tensors = self._tensors
            release = self.release_after

            def operand(spec):
                return tensors[spec[1]] if spec[0] == "const" else values[spec[1]]

            for index, step in enumerate(self.steps):
                op = step[0]
                if op == "Conv":
                    _, x, weight, bias, params, out = step
                    values[out] = F.conv2d(values[x], tensors[weight], tensors[bias] if bias else None, **params)
                elif op == "Mul":
                    values[step[3]] = operand(step[1]) * operand(step[2])
                elif op == "Add":
                    values[step[3]] = operand(step[1]) + operand(step[2])
                elif op == "Sub":
                    values[step[3]] = operand(step[1]) - operand(step[2])
                elif op == "Div":
                    values[step[3]] = operand(step[1]) / operand(step[2])
                elif op == "Softmax":
                    values[step[3]] = torch.softmax(values[step[1]], dim=step[2])
                elif op == "Split":
                    sizes, axis = step[2]
                    for name, part in zip(step[3], torch.split(values[step[1]], sizes, dim=axis)):
                        values[name] = part
                elif op == "Sigmoid":
                    values[step[2]] = torch.sigmoid(values[step[1]])
                elif op == "Concat":
                    values[step[3]] = torch.cat([values[n] for n in step[1]], dim=step[2])
                elif op == "Slice":
                    values[step[3]] = values[step[1]][step[2]]
                elif op == "MaxPool":
                    values[step[3]] = F.max_pool2d(values[step[1]], **step[2])
                elif op == "Resize":
                    values[step[3]] = F.interpolate(values[step[1]], scale_factor=step[2], mode="nearest")
                elif op == "Reshape":
                    x = values[step[1]]
                    shape = [x.shape[i] if d == 0 else d for i, d in enumerate(step[2])]
                    values[step[3]] = x.reshape(shape)
                elif op == "Transpose":
                    values[step[3]] = values[step[1]].permute(step[2])
                for name in release[index]:
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

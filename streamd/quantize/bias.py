"""Bias correction of a Q/DQ model: each INT8 Conv's float bias absorbs the mean error INT8 adds.

Rounding the weights (per channel) and the input (per tensor, clipped at the calibrated range) shifts
the mean of a Conv's output channel by ``E[Wq * DQ(Q(x))] - E[W * x]``: a constant per channel, so
it is removed by subtracting it from the bias, which stays float in the Q/DQ graph (TensorRT fuses a
float bias into the INT8 convolution). The means are measured on the calibration images with the
Q/DQ model itself, so every Conv is corrected for the input it really gets. Border effects of
padding are ignored (the mean is over the whole output map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from streamd.inference.onnxruntime_backend import create_session


@dataclass(frozen=True)
class _QuantizedConv:
    node: onnx.NodeProto
    float_input: str  # the tensor QuantizeLinear reads
    quantized_input: str  # the DequantizeLinear output the Conv reads
    weight: np.ndarray  # float weight of the float model
    quantized_weight: np.ndarray  # dequantized INT8 weight
    group: int


def _quantized_convs(model: onnx.ModelProto, float_model: onnx.ModelProto) -> list[_QuantizedConv]:
    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    float_weights = {t.name: t for t in float_model.graph.initializer}
    float_convs = {node.name: node for node in float_model.graph.node if node.op_type == "Conv"}
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name not in float_convs:
            continue
        dequantize, weight_dequantize = producers.get(node.input[0]), producers.get(node.input[1])
        if (getattr(dequantize, "op_type", "") != "DequantizeLinear"
                or getattr(weight_dequantize, "op_type", "") != "DequantizeLinear"
                or getattr(producers.get(dequantize.input[0]), "op_type", "") != "QuantizeLinear"
                or weight_dequantize.input[0] not in initializers):
            continue  # a Conv kept in float
        quantize = producers[dequantize.input[0]]
        values = numpy_helper.to_array(initializers[weight_dequantize.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(initializers[weight_dequantize.input[1]]).astype(np.float32)
        zero_point = (numpy_helper.to_array(initializers[weight_dequantize.input[2]]).astype(np.float32)
                      if len(weight_dequantize.input) > 2 and weight_dequantize.input[2] else np.zeros_like(scale))
        per_channel = (-1,) + (1,) * (values.ndim - 1)
        quantized_weight = (values - zero_point.reshape(per_channel)) * scale.reshape(per_channel)
        weight = numpy_helper.to_array(float_weights[float_convs[node.name].input[1]]).astype(np.float32)
        group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        convs.append(_QuantizedConv(node, quantize.input[0], dequantize.output[0], weight, quantized_weight, group))
    return convs


def _channel_means(model: onnx.ModelProto, tensors: list[str], inputs: np.ndarray,
                   threads: int) -> dict[str, np.ndarray]:
    """Mean of each tensor per channel (axis 1) over ``inputs``, one image at a time."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    del augmented.graph.output[:]
    augmented.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in tensors)
    session = create_session(augmented.SerializeToString(), threads, quiet=True)
    input_name = session.get_inputs()[0].name
    sums = {name: np.zeros(0, np.float64) for name in tensors}
    for index in range(inputs.shape[0]):
        for name, value in zip(tensors, session.run(tensors, {input_name: inputs[index:index + 1]})):
            axes = tuple(axis for axis in range(value.ndim) if axis != 1)
            mean = value.mean(axis=axes, dtype=np.float64)
            sums[name] = mean if sums[name].size == 0 else sums[name] + mean
    return {name: total / inputs.shape[0] for name, total in sums.items()}


def correct_biases(model: onnx.ModelProto, float_model: onnx.ModelProto, inputs: np.ndarray,
                   threads: int = 1) -> int:
    """Correct the bias of every INT8 Conv of the Q/DQ ``model`` in place; returns how many.

    ``float_model``: the model it was quantized from (node names kept), for the float weights;
    ``inputs``: preprocessed calibration images (N x 3 x H x W)."""
    convs = _quantized_convs(model, float_model)
    if not convs:
        return 0
    tensors = sorted({c.float_input for c in convs} | {c.quantized_input for c in convs})
    means = _channel_means(model, tensors, inputs, threads)
    initializers = {t.name: t for t in model.graph.initializer}
    for conv in convs:
        outputs, inputs_per_group = conv.weight.shape[0], conv.weight.shape[1]
        outputs_per_group = outputs // conv.group
        # Sum over the kernel window: the mean of a channel is the same at every position.
        weight = conv.weight.reshape(outputs, inputs_per_group, -1).sum(axis=2)
        quantized_weight = conv.quantized_weight.reshape(outputs, inputs_per_group, -1).sum(axis=2)
        shift = np.zeros(outputs, np.float64)
        for group in range(conv.group):
            out_slice = slice(group * outputs_per_group, (group + 1) * outputs_per_group)
            in_slice = slice(group * inputs_per_group, (group + 1) * inputs_per_group)
            shift[out_slice] = (quantized_weight[out_slice] @ means[conv.quantized_input][in_slice]
                                - weight[out_slice] @ means[conv.float_input][in_slice])
        if len(conv.node.input) > 2 and conv.node.input[2]:
            bias_tensor = initializers[conv.node.input[2]]
            bias = numpy_helper.to_array(bias_tensor).astype(np.float64)
            bias_tensor.CopyFrom(numpy_helper.from_array((bias - shift).astype(np.float32), bias_tensor.name))
        else:
            name = f"{conv.node.name}_corrected_bias"
            model.graph.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
            if len(conv.node.input) == 2:
                conv.node.input.append(name)
            else:
                conv.node.input[2] = name
    return len(convs)

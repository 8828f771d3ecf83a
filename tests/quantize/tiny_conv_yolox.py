"""A tiny YOLOX-layout ONNX model built from Convs, small enough to quantize in a second.

backbone: 5 stride-2 Conv+SiLU stages (3 -> 8 channels) on a 64x64 input; a head per stride 8/16/32
(reg 1x1 Conv, objectness and class 1x1 Conv + Sigmoid, concatenated), flattened, concatenated and
transposed to the official [1, cells, 5 + classes] output. Biases make every cell a confident
class-0 candidate, so the float model always has detections to score fidelity against; the box
terms depend on the image, so quantization noise moves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_SIZE = 64
NUM_CLASSES = 2
CHANNELS = 8


def write_tiny_conv_yolox(path: Path, opset: int = 11, dynamic_input: bool = False, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers: list = []
    nodes: list = []

    def conv(name: str, source: str, c_in: int, c_out: int, kernel: int, stride: int, weight_scale: float,
             bias: np.ndarray | None = None) -> str:
        weight = (rng.standard_normal((c_out, c_in, kernel, kernel)) * weight_scale).astype(np.float32)
        bias = np.zeros(c_out, np.float32) if bias is None else bias.astype(np.float32)
        initializers.extend([numpy_helper.from_array(weight, f"{name}.w"), numpy_helper.from_array(bias, f"{name}.b")])
        nodes.append(helper.make_node("Conv", [source, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name,
                                      kernel_shape=[kernel, kernel], strides=[stride, stride],
                                      pads=[kernel // 2] * 4))
        return f"{name}.out"

    def silu(name: str, source: str) -> str:
        nodes.append(helper.make_node("Sigmoid", [source], [f"{name}.sig"], name=f"{name}_sigmoid"))
        nodes.append(helper.make_node("Mul", [source, f"{name}.sig"], [f"{name}.act"], name=f"{name}_mul"))
        return f"{name}.act"

    features = {}
    tensor, c_in = "images", 3
    for stage, stride in enumerate((2, 4, 8, 16, 32)):
        # 0-255 input: the first conv's weights are small so the activations stay O(1).
        scale = 0.003 if stage == 0 else 0.15
        tensor = silu(f"stage{stage}", conv(f"stage{stage}", tensor, c_in, CHANNELS, 3, 2, scale))
        c_in = CHANNELS
        features[stride] = tensor
    flat = []
    for stride in (8, 16, 32):
        feature = features[stride]
        reg = conv(f"reg{stride}", feature, CHANNELS, 4, 1, 1, 0.15)
        obj_logits = conv(f"obj{stride}", feature, CHANNELS, 1, 1, 1, 0.3, np.array([2.5]))
        cls_logits = conv(f"cls{stride}", feature, CHANNELS, NUM_CLASSES, 1, 1, 0.3,
                          np.array([2.0] + [-3.0] * (NUM_CLASSES - 1)))
        nodes.append(helper.make_node("Sigmoid", [obj_logits], [f"obj{stride}.p"], name=f"obj{stride}_sigmoid"))
        nodes.append(helper.make_node("Sigmoid", [cls_logits], [f"cls{stride}.p"], name=f"cls{stride}_sigmoid"))
        nodes.append(helper.make_node("Concat", [reg, f"obj{stride}.p", f"cls{stride}.p"], [f"head{stride}"],
                                      name=f"head{stride}_concat", axis=1))
        initializers.append(numpy_helper.from_array(np.array([1, 5 + NUM_CLASSES, -1], np.int64), f"shape{stride}"))
        nodes.append(helper.make_node("Reshape", [f"head{stride}", f"shape{stride}"], [f"flat{stride}"],
                                      name=f"head{stride}_reshape"))
        flat.append(f"flat{stride}")
    nodes.append(helper.make_node("Concat", flat, ["all"], name="levels_concat", axis=2))
    nodes.append(helper.make_node("Transpose", ["all"], ["output"], name="output_transpose", perm=[0, 2, 1]))
    cells = sum((INPUT_SIZE // s) ** 2 for s in (8, 16, 32))
    spatial = ["height", "width"] if dynamic_input else [INPUT_SIZE, INPUT_SIZE]
    graph = helper.make_graph(
        nodes, "tiny_conv_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *spatial])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, None if dynamic_input else cells,
                                                                     5 + NUM_CLASSES])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_images(folder: Path, count: int, seed: int = 1) -> list[Path]:
    """``count`` PNGs of random rectangles on a noisy background, varied sizes, named in order."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        height, width = int(rng.integers(48, 96)), int(rng.integers(48, 96))
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, width - 16)), int(rng.integers(0, height - 16))
            color = [int(c) for c in rng.integers(80, 256, 3)]
            cv2.rectangle(image, (x0, y0), (x0 + int(rng.integers(8, 32)), y0 + int(rng.integers(8, 32))), color, -1)
        path = folder / f"img_{index:03d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths

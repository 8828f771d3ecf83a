"""Tiny ONNX graphs in the Ultralytics output layouts, with planted rows and the metadata the exporter
writes: decoders are checked against exact boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support import SHARED

YOLOV8N = SHARED / "models" / "ultralytics" / "yolov8n.onnx"  # [1, 84, 8400], random weights
YOLO26N_END2END = SHARED / "models" / "ultralytics" / "yolo26n_end2end.onnx"  # [1, 300, 6]


def ultralytics_metadata(num_classes: int, input_size: int, end2end: bool) -> dict[str, str]:
    """Custom metadata as Ultralytics' ONNX exporter writes it."""
    names = {i: f"thing{i}" for i in range(num_classes)}
    return {"author": "Ultralytics", "stride": "32", "task": "detect", "batch": "1",
            "imgsz": f"[{input_size}, {input_size}]", "names": repr(names), "end2end": str(end2end)}


def rtdetr_metadata(num_classes: int, input_size: int) -> dict[str, str]:
    """Custom metadata as Ultralytics' ONNX exporter writes it for RT-DETR (rtdetr-l.yaml, 8.4 exporter)."""
    names = {i: f"thing{i}" for i in range(num_classes)}
    return {"description": "Ultralytics rtdetr-l model ", "author": "Ultralytics", "stride": "32", "task": "detect",
            "head": "RTDETRDecoder", "batch": "1", "imgsz": f"[{input_size}, {input_size}]", "names": repr(names),
            "channels": "3", "end2end": "False"}


def write_constant_model(path: Path, table: np.ndarray, input_size: int,
                         metadata: dict[str, str] | None = None) -> Path:
    """An ONNX model whose one output is ``table`` (plus 0 x input, so the input stays live)."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, input_size, input_size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(table.shape))],
        initializer=[numpy_helper.from_array(table.astype(np.float32), "table"),
                     numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


def anchor_free_table(cells: int, num_classes: int, planted: list[tuple[int, float, float, float, float, int, float]]
                      ) -> np.ndarray:
    """[1, 4+C, cells]: ``planted`` rows (cell, cx, cy, w, h, class, score); every other score is 0."""
    table = np.zeros((1, 4 + num_classes, cells), np.float32)
    for cell, cx, cy, w, h, class_id, score in planted:
        table[0, :4, cell] = (cx, cy, w, h)
        table[0, 4 + class_id, cell] = score
    return table

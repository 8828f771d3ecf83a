"""The 80 COCO class names, in the order of the official YOLOX exports (and of
``coco_classes.txt``): the default for a model with 80 classes and no names file."""

from __future__ import annotations

from pathlib import Path

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# Every YOLOX layout has 5 + classes channels: box (4), objectness (1), classes.
_BOX_AND_OBJECTNESS = 5
# Ultralytics' anchor-free layout has no objectness: box (4), classes.
_BOX = 4


def model_class_count(model_path: Path) -> int | None:
    """The class count the model's outputs imply, or None when it cannot be read from the graph
    (not ONNX, dynamic channel dimension, an unknown layout)."""
    import onnx  # noqa: PLC0415 - only when no class names were given

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # not an ONNX file: the backend reports that, with its own message
        return None
    counts = set()
    for output in model.graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        if len(dims) == 3 and _BOX < dims[1] < dims[2]:  # Ultralytics anchor-free: [B, 4 + C, N]
            counts.add(dims[1] - _BOX)
        elif len(dims) == 3 and dims[2] > _BOX_AND_OBJECTNESS:  # [B, N, 5 + C]
            counts.add(dims[2] - _BOX_AND_OBJECTNESS)
        elif len(dims) == 4 and dims[1] > _BOX_AND_OBJECTNESS:  # [B, 5 + C, H, W]
            counts.add(dims[1] - _BOX_AND_OBJECTNESS)
    return counts.pop() if len(counts) == 1 else None

"""What an ONNX export says about itself: the custom metadata Ultralytics writes (``names``, ``imgsz``,
``stride``, ``task``, ``end2end``, ``head``, ``description``) and the declared output shapes, read without
running the model."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from streamd.yolox.layout import OutputInfo


@dataclass(frozen=True)
class ModelMetadata:
    """``names`` empty, ``imgsz`` None, ``end2end`` None: the export does not say."""

    # "ultralytics" when the export names Ultralytics as its author, "rtdetr" when its head is RT-DETR's
    # decoder (Ultralytics RT-DETR exports), else "".
    family: str = ""
    names: tuple[str, ...] = ()
    imgsz: tuple[int, int] | None = None  # (width, height)
    stride: int = 0
    task: str = ""
    end2end: bool | None = None
    outputs: tuple[OutputInfo, ...] = field(default_factory=tuple)


def parse_names(text: str) -> tuple[str, ...]:
    """``{0: 'person', 1: 'bicycle'}`` (a Python dict literal, as Ultralytics writes it) or a list -> names
    in class-id order; () when it cannot be read or the ids are not 0..C-1."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return ()
    if isinstance(value, dict):
        if sorted(value) != list(range(len(value))):
            return ()
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, (list, tuple)) or not value:
        return ()
    return tuple(str(name) for name in value)


def _imgsz(text: str) -> tuple[int, int] | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[1]), int(value[0])  # Ultralytics writes [height, width]
    return None


def _family(props: dict[str, str]) -> str:
    if "ultralytics" not in props.get("author", "").lower():
        return ""
    # Current exports name the head class; earlier ones only say "Ultralytics rtdetr-l model" in the description.
    description = props.get("description", "").lower().replace("-", "")
    if props.get("head", "") == "RTDETRDecoder" or "rtdetr" in description:
        return "rtdetr"
    return "ultralytics"


def metadata_from_props(props: dict[str, str], outputs: tuple[OutputInfo, ...] = ()) -> ModelMetadata:
    end2end = props.get("end2end")
    stride = props.get("stride", "")
    return ModelMetadata(
        family=_family(props),
        names=parse_names(props.get("names", "")),
        imgsz=_imgsz(props.get("imgsz", "")),
        stride=int(stride) if stride.isdigit() else 0,
        task=props.get("task", ""),
        end2end=None if end2end is None else end2end.strip().lower() == "true",
        outputs=outputs,
    )


def read_metadata(model_path: str | Path) -> ModelMetadata:
    """The metadata of the ONNX model at ``model_path``; an empty ModelMetadata for anything that is not a
    readable ONNX file (a TensorRT engine, a missing file: the backend reports those)."""
    path = Path(model_path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return ModelMetadata()
    import onnx  # noqa: PLC0415 - only when a model is opened

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX after all: the backend says so, with its own message
        return ModelMetadata()
    outputs = tuple(OutputInfo(o.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                              for d in o.type.tensor_type.shape.dim))
                    for o in model.graph.output)
    return metadata_from_props({p.key: p.value for p in model.metadata_props}, outputs)

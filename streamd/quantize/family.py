"""Which detector family the float model is, read the way the daemon reads it: its output layout (from
the output shapes and the export's metadata), class count, preprocessing convention, and the nodes the
family keeps in float whatever the search finds.

Families (``streamd.yolox.decoders``): YOLOX (``yolox``, ``yolox-decoded``, ``heads``), Ultralytics
anchor-free (``ultralytics``, ``ultralytics-transposed``), NMS-free end-to-end (``end2end``) and RT-DETR
(``rtdetr``, ``rtdetr-queries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from streamd.errors import ModelLayoutError
from streamd.quantize.errors import QuantizeError
from streamd.yolox.decoders import LAYOUTS, layout_family
from streamd.yolox.layout import OutputInfo, boxes_look_decoded, detect_layout
from streamd.yolox.metadata import ModelMetadata, metadata_from_props
from streamd.yolox.preprocess import FAMILY_CONVENTIONS

# Layouts whose class ids come from the model itself ([B, K, 6]): without names in the metadata, any id counts.
_ID_LAYOUTS = ("end2end", "rtdetr")
_ANY_CLASS = 1 << 16


@dataclass(frozen=True)
class ModelFamily:
    """``layout`` may still be ``yolox`` for a ``yolox-decoded`` model until :meth:`resolved` saw an output."""

    family: str
    layout: str
    num_classes: int
    convention: str  # the family's preprocessing convention (streamd.yolox.preprocess.CONVENTIONS)
    metadata: ModelMetadata

    def resolved(self, sample_output: np.ndarray) -> ModelFamily:
        """``yolox`` and ``yolox-decoded`` share a shape: one real output tells them apart."""
        if self.layout == "yolox" and boxes_look_decoded(sample_output):
            return ModelFamily(self.family, "yolox-decoded", self.num_classes, self.convention, self.metadata)
        return self


def _class_count_candidates(shapes: Sequence[tuple[int | None, ...]]) -> list[int]:
    """Class counts the output shapes allow, most specific first (5+C, then 4+C, either axis)."""
    if len(shapes) == 3 and all(len(s) == 4 for s in shapes):
        return [int(shapes[0][1]) - 5] if shapes[0][1] else []
    if len(shapes) != 1 or len(shapes[0]) != 3:
        return []
    _, rows, width = shapes[0]
    counts = [value - offset for offset in (5, 4) for value in (width, rows) if value]
    return [c for c in dict.fromkeys(counts) if c > 0] or [1]


def detect_family(model: onnx.ModelProto, output_shapes: dict[str, tuple[int | None, ...]], input_width: int,
                  input_height: int) -> ModelFamily:
    """The family of ``model`` from its declared output shapes and metadata; QuantizeError when none fits."""
    infos = tuple(OutputInfo(name, shape) for name, shape in output_shapes.items())
    metadata = metadata_from_props({p.key: p.value for p in model.metadata_props}, infos)
    candidates = [len(metadata.names)] if metadata.names else _class_count_candidates(list(output_shapes.values()))
    error: ModelLayoutError | None = None
    for num_classes in candidates:
        try:
            layout = detect_layout(infos, input_width, input_height, num_classes, family=metadata.family,
                                   end2end=metadata.end2end)
        except ModelLayoutError as failure:
            error = failure
            continue
        count = _ANY_CLASS if layout in _ID_LAYOUTS and not metadata.names else num_classes
        family = layout_family(layout)
        return ModelFamily(family, layout, count, FAMILY_CONVENTIONS.get(family, "yolox"), metadata)
    shapes = ", ".join(f"{name}{list(shape)}" for name, shape in output_shapes.items())
    raise QuantizeError(f"cannot tell the model's family from its outputs {shapes}"
                        + (f": {error}" if error else "") + f" (streamd knows the layouts {', '.join(LAYOUTS)})")


def family_float_nodes(family: str, model: onnx.ModelProto, conv_macs: dict[str, int]) -> list[str]:
    """Conv nodes ``family`` keeps in float before any search (the measurement: docs/quantize.md).

    Ultralytics anchor-free heads: the DFL conv, a fixed 0..15 weighted sum over a Softmax of box bins
    (the expected distance of each box side). Its input is a probability, quantized per tensor in steps
    of 1/127, and its output is a box side in stride units: in float it is worth 0.007-0.011 of
    fidelity for a few thousandths of a percent of the MACs. Found by structure (a Conv fed by a
    Softmax), not by name.
    """
    if family != "ultralytics":
        return []
    producers = {output: node for node in model.graph.node for output in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "Conv" and node.name in conv_macs
            and getattr(producers.get(node.input[0]), "op_type", "") == "Softmax"]

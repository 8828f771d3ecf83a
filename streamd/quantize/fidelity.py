"""Fidelity: how closely a quantized model's detections follow the float model's own.

mAP@0.5:0.95 of the candidate's detections (low score threshold, so recall is not cut) against the
float model's detections above ``reference_score_threshold`` taken as ground truth, with streamd's
own decoder and mAP code. Models run in ONNX Runtime on the CPU, one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamd.errors import BackendError, ModelLayoutError
from streamd.evaluation.detection_map import Boxes, mean_average_precision
from streamd.inference.onnxruntime_backend import OnnxRuntimeBackend
from streamd.quantize.errors import QuantizeError
from streamd.yolox.layout import OutputInfo, resolve_layout
from streamd.yolox.postprocess import LAYOUTS, YoloxDecoder

REFERENCE_SCORE_THRESHOLD = 0.3
CANDIDATE_SCORE_THRESHOLD = 0.01
NMS_THRESHOLD = 0.45


class ModelRunner:
    """streamd's ONNX Runtime backend over a model file; ``run`` returns every output, batch by image."""

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        try:
            # The build machines are shared: one core by default; ONNX Runtime's warnings stay out.
            self.backend = OnnxRuntimeBackend(model_path, threads, quiet=True)
        except BackendError as error:
            raise QuantizeError(str(error)) from error
        self.input_name = self.backend.inputs[0].name
        self.output_names = [o.name for o in self.backend.outputs]

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """(N x 3 x H x W) -> one (N x ...) array per output."""
        per_image = [self.backend.infer({self.input_name: inputs[i:i + 1]}) for i in range(inputs.shape[0])]
        return [np.concatenate([outputs[name] for outputs in per_image]) for name in self.output_names]


@dataclass(frozen=True)
class DetectionModelSpec:
    """Layout and class count of a YOLOX-style model, read from its output shapes."""

    layout: str
    num_classes: int
    input_width: int
    input_height: int

    @staticmethod
    def infer(output_shapes: dict[str, tuple[int | None, ...]], input_width: int, input_height: int,
              sample_outputs: Sequence[np.ndarray]) -> DetectionModelSpec:
        shapes = list(output_shapes.values())
        channels = shapes[0][-1] if len(shapes) == 1 else shapes[0][1]
        if channels is None or channels <= 5:
            raise QuantizeError(f"cannot read a class count from output shapes {shapes}")
        num_classes = int(channels) - 5
        infos = [OutputInfo(name, shape) for name, shape in output_shapes.items()]
        try:
            layout = resolve_layout("auto", infos, input_width, input_height, num_classes,
                                    probe=lambda: sample_outputs[0][:1])
        except ModelLayoutError as error:
            raise QuantizeError(f"{error}. streamd quantize handles YOLOX layouts only for now") from None
        if layout not in LAYOUTS:
            raise QuantizeError(f"model layout '{layout}': streamd quantize handles YOLOX layouts only for now "
                                f"({', '.join(LAYOUTS)})")
        return DetectionModelSpec(layout, num_classes, input_width, input_height)


class FidelityMeter:
    """Holds the float model's reference detections for a set of images; scores candidates."""

    def __init__(self, spec: DetectionModelSpec, reference_outputs: Sequence[np.ndarray],
                 reference_score_threshold: float = REFERENCE_SCORE_THRESHOLD) -> None:
        self.spec = spec
        self.reference_score_threshold = reference_score_threshold
        self._candidate_decoder = self._decoder(CANDIDATE_SCORE_THRESHOLD)
        reference_decoder = self._decoder(reference_score_threshold)
        self.references = [self._boxes(reference_decoder, reference_outputs, i)
                           for i in range(reference_outputs[0].shape[0])]
        self.reference_outputs = reference_outputs

    def _decoder(self, score_threshold: float) -> YoloxDecoder:
        return YoloxDecoder(self.spec.layout, self.spec.input_width, self.spec.input_height,
                            self.spec.num_classes, score_threshold, NMS_THRESHOLD)

    @staticmethod
    def _boxes(decoder: YoloxDecoder, outputs: Sequence[np.ndarray], index: int) -> Boxes:
        detections = decoder.decode([o[index:index + 1] for o in outputs])
        return Boxes(detections.boxes_xyxy, detections.class_ids, detections.scores)

    @property
    def reference_detection_count(self) -> int:
        return sum(int(r.class_ids.shape[0]) for r in self.references)

    def score(self, candidate_outputs: Sequence[np.ndarray]) -> dict[str, float]:
        """``{"map50_95", "map50", "classes", "output_nmse"}`` of candidate outputs for the same images.

        ``output_nmse`` (mean squared error of all outputs over their mean square) is a smooth
        tie-breaker: mAP does not move for small errors, the sensitivity ranking still needs an order.
        """
        predictions = [self._boxes(self._candidate_decoder, candidate_outputs, i)
                       for i in range(candidate_outputs[0].shape[0])]
        result = dict(mean_average_precision(predictions, self.references))
        errors = [float(np.mean((c - r) ** 2) / max(float(np.mean(r ** 2)), 1e-12))
                  for c, r in zip(candidate_outputs, self.reference_outputs)]
        result["output_nmse"] = float(np.mean(errors))
        return result

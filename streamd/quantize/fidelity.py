"""Fidelity: how closely a quantized model's detections follow the float model's own.

mAP@0.5:0.95 of the candidate's detections (low score threshold, so recall is not cut) against the
float model's detections above ``reference_score_threshold`` taken as ground truth, with streamd's
own decoder and mAP code. Models run in ONNX Runtime on the CPU, one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import BackendError
from streamd.evaluation.detection_map import Boxes, mean_average_precision
from streamd.inference.onnxruntime_backend import OnnxRuntimeBackend
from streamd.quantize.errors import QuantizeError
from streamd.yolox.decoders import make_decoder

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
    """What decoding a model's outputs needs: its layout (any family streamd decodes), class count and
    input size (``streamd.quantize.family`` reads them)."""

    layout: str
    num_classes: int
    input_width: int
    input_height: int


class FidelityMeter:
    """Holds the float model's reference detections for a set of images; scores candidates."""

    def __init__(self, spec: DetectionModelSpec, reference_outputs: Sequence[np.ndarray],
                 reference_score_threshold: float = REFERENCE_SCORE_THRESHOLD) -> None:
        self.spec = spec
        self.reference_score_threshold = reference_score_threshold
        # Below the reference threshold, so a candidate's score just under it still counts for recall.
        self.candidate_score_threshold = min(CANDIDATE_SCORE_THRESHOLD, reference_score_threshold / 10)
        self._candidate_decoder = self._decoder(self.candidate_score_threshold)
        reference_decoder = self._decoder(reference_score_threshold)
        self.references = [self._boxes(reference_decoder, reference_outputs, i)
                           for i in range(reference_outputs[0].shape[0])]
        self.reference_outputs = reference_outputs

    def _decoder(self, score_threshold: float) -> Any:
        return make_decoder(self.spec.layout, self.spec.input_width, self.spec.input_height,
                            self.spec.num_classes, score_threshold, NMS_THRESHOLD)

    @staticmethod
    def _boxes(decoder: Any, outputs: Sequence[np.ndarray], index: int) -> Boxes:
        detections = decoder.decode([o[index:index + 1] for o in outputs])
        boxes = detections.boxes_xyxy
        # A box of no area (or inverted: x2 < x1, which NMS-free heads can emit) has IoU 0 even with
        # itself: as ground truth it could never be matched, so both sides leave such boxes out.
        kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Boxes(boxes[kept], detections.class_ids[kept], detections.scores[kept])

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

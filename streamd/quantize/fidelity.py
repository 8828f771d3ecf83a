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
from streamd.yolox.postprocess import grid_cells

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


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def dense_predictions(spec: DetectionModelSpec, outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Every candidate of a batch before any threshold: ``(scores (N, A, C), boxes (N, A, 4))`` with the
    boxes as centre and size in input pixels, for the layouts whose candidates keep their place from
    one model to the next (dense grids, RT-DETR queries); None for layouts that sort or select first."""
    if spec.layout in ("yolox", "yolox-decoded", "heads"):
        if spec.layout == "heads":
            # [B, 5+C, H, W] per stride, largest map first (the grid order), logits.
            maps = sorted(outputs, key=lambda m: -m.shape[2])
            rows = np.concatenate([m.reshape(m.shape[0], m.shape[1], -1).transpose(0, 2, 1) for m in maps], axis=1)
            rows = np.concatenate((rows[..., :4], _sigmoid(rows[..., 4:])), axis=2)
        else:
            rows = outputs[0]
        scores = rows[..., 4:5] * rows[..., 5:]
        if spec.layout == "yolox-decoded":
            return scores, rows[..., :4]
        grid, stride = grid_cells(spec.input_width, spec.input_height)
        boxes = np.concatenate(((rows[..., 0:2] + grid) * stride, np.exp(np.minimum(rows[..., 2:4], 20.0)) * stride),
                               axis=2)
        return scores, boxes
    if spec.layout in ("ultralytics", "ultralytics-transposed"):
        rows = outputs[0].transpose(0, 2, 1) if spec.layout == "ultralytics" else outputs[0]
        return rows[..., 4:4 + spec.num_classes], rows[..., :4]
    if spec.layout == "rtdetr-queries":
        size = np.array([spec.input_width, spec.input_height] * 2, np.float32)
        return outputs[0][..., 4:], outputs[0][..., :4] * size
    return None


def detection_output_error(spec: DetectionModelSpec, candidate: Sequence[np.ndarray],
                           reference: Sequence[np.ndarray]) -> np.ndarray | None:
    """Per image: how far a candidate's candidates are from the float model's, smoothly.

    The class-score error (squared, over the float scores' energy) plus the box error (centre and size
    errors relative to the float box's size, squared, weighted by the float box's best score). Unlike
    mAP it has no threshold to cross: every small error counts a little, so on a few hundred boxes it
    does not move in one-detection steps. None for layouts without a fixed candidate order.
    """
    dense_candidate, dense_reference = dense_predictions(spec, candidate), dense_predictions(spec, reference)
    if dense_candidate is None or dense_reference is None:
        return None
    (scores, boxes), (reference_scores, reference_boxes) = dense_candidate, dense_reference
    batch = reference_scores.shape[0]
    score_error = (np.sum((scores - reference_scores).reshape(batch, -1) ** 2, axis=1)
                   / np.maximum(np.sum(reference_scores.reshape(batch, -1) ** 2, axis=1), 1e-12))
    size = np.maximum(np.tile(reference_boxes[..., 2:4], 2), 1e-3)
    weight = reference_scores.max(axis=2)
    box_error = (np.sum(weight * np.sum(((boxes - reference_boxes) / size) ** 2, axis=2), axis=1)
                 / np.maximum(np.sum(weight, axis=1), 1e-12))
    return (score_error + box_error).astype(np.float64)


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

    def output_error(self, candidate_outputs: Sequence[np.ndarray]) -> float:
        """Mean :func:`detection_output_error` over the images (no decoding, no mAP: fast and smooth);
        the normalised error of the raw outputs for layouts without a fixed candidate order."""
        errors = detection_output_error(self.spec, candidate_outputs, self.reference_outputs)
        if errors is None:
            return _output_nmse(candidate_outputs, self.reference_outputs)
        return float(np.mean(errors))

    def score(self, candidate_outputs: Sequence[np.ndarray]) -> dict[str, float]:
        """``{"map50_95", "map50", "classes", "output_nmse"}`` of candidate outputs for the same images.

        ``output_nmse`` (mean squared error of all outputs over their mean square) is a smooth
        tie-breaker: mAP does not move for small errors, the sensitivity ranking still needs an order.
        """
        predictions = [self._boxes(self._candidate_decoder, candidate_outputs, i)
                       for i in range(candidate_outputs[0].shape[0])]
        result = dict(mean_average_precision(predictions, self.references))
        result["output_nmse"] = _output_nmse(candidate_outputs, self.reference_outputs)
        return result


def _output_nmse(candidate_outputs: Sequence[np.ndarray], reference_outputs: Sequence[np.ndarray]) -> float:
    errors = [float(np.mean((c - r) ** 2) / max(float(np.mean(r ** 2)), 1e-12))
              for c, r in zip(candidate_outputs, reference_outputs)]
    return float(np.mean(errors))

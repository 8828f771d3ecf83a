"""YOLOX output decoding, vectorised: no Python loop over grid cells.

Layouts:
- ``yolox``: the official export, one [B, N, 5+C] tensor; box terms raw (``(xy + grid) * stride``,
  ``exp(wh) * stride``), objectness and class scores already sigmoid-ed.
- ``yolox-decoded``: the same tensor exported with ``decode_in_inference``: cx, cy, w, h already in
  network-input pixels.
- ``heads``: three [B, 5+C, H, W] maps (strides 8/16/32), every term a raw logit.

Grids are computed once per decoder; inputs are never mutated. Which layout a model has is read
by ``streamd.yolox.layout``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamd.errors import ModelLayoutError
from streamd.yolox.detections import Detections
from streamd.yolox.nms import class_aware_nms

STRIDES = (8, 16, 32)
LAYOUTS = ("yolox", "yolox-decoded", "heads")


def grid_cells(input_width: int, input_height: int, strides: Sequence[int] = STRIDES
               ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) cell coordinates (x, y) and (N, 1) strides, in YOLOX's order (stride, row, column)."""
    grids, cell_strides = [], []
    for stride in strides:
        rows, cols = input_height // stride, input_width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack((xs, ys), axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((rows * cols, 1), stride))
    return (np.concatenate(grids).astype(np.float32), np.concatenate(cell_strides).astype(np.float32))


def _logit(probability: float) -> float:
    probability = min(max(probability, 1e-7), 1 - 1e-7)
    return float(np.log(probability / (1 - probability)))


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


class YoloxDecoder:
    """Decode one frame's raw outputs into NMS-ed detections in network-input pixels."""

    def __init__(self, layout: str, input_width: int, input_height: int, num_classes: int,
                 score_threshold: float, nms_threshold: float, max_detections: int = 300,
                 strides: Sequence[int] = STRIDES) -> None:
        if layout not in LAYOUTS:
            raise ModelLayoutError(f"unknown layout '{layout}', expected one of {LAYOUTS}")
        self.layout = layout
        self.num_classes = num_classes
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = max_detections
        self.strides = tuple(strides)
        self._grid, self._cell_stride = grid_cells(input_width, input_height, strides)
        # (N, 3): x, y, stride per cell, so the candidates' cells are one gather, not two.
        self._grid_stride = np.concatenate((self._grid, self._cell_stride), axis=1)
        self._objectness_logit_threshold = _logit(self.score_threshold)

    def flatten(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Outputs of one batch item -> (N, 5+C) rows in the grid order (heads: still logits)."""
        if self.layout != "heads":
            return outputs[0][0]
        # Largest map (stride 8) first, as the grid order; [5+C, H, W] -> [H*W, 5+C].
        maps = sorted((o[0] for o in outputs), key=lambda m: -m.shape[1])
        return np.concatenate([m.reshape(m.shape[0], -1).T for m in maps])

    def decode(self, outputs: Sequence[np.ndarray]) -> Detections:
        """Candidates above the score threshold, boxes decoded, class-aware NMS applied."""
        rows = self.flatten(outputs)
        if self.layout == "heads":
            # score = obj * cls <= obj, so cells whose objectness is below the threshold can go
            # before any sigmoid is computed.
            candidate = np.flatnonzero(rows[:, 4] > self._objectness_logit_threshold)
            rows = rows[candidate]
            objectness = _sigmoid(rows[:, 4])
            class_probabilities = _sigmoid(rows[:, 5:])
        else:
            candidate = np.flatnonzero(rows[:, 4] > self.score_threshold)
            rows = rows[candidate]
            objectness = rows[:, 4]
            class_probabilities = rows[:, 5:]
        count = rows.shape[0]
        if count == 0:
            return Detections.empty()
        class_ids = class_probabilities.argmax(axis=1)
        scores = objectness * class_probabilities[np.arange(count), class_ids]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.shape[0] == 0:
            return Detections.empty()
        rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
        if self.layout == "yolox-decoded":
            centers, half_sizes = rows[:, 0:2], rows[:, 2:4] / 2
        else:
            cells = self._grid_stride[candidate[keep]]
            cell_stride = cells[:, 2:3]
            centers = (rows[:, 0:2] + cells[:, 0:2]) * cell_stride
            half_sizes = np.exp(rows[:, 2:4]) * cell_stride / 2
        boxes = np.concatenate((centers - half_sizes, centers + half_sizes), axis=1).astype(np.float32, copy=False)
        return class_aware_nms(boxes, scores.astype(np.float32, copy=False), class_ids, self.nms_threshold,
                               self.max_detections)

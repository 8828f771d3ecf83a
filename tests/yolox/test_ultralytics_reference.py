"""streamd's CPU decoders against Ultralytics' own post-processing, on raw outputs of real exports.

``data/ultralytics_reference.npz`` holds, for a few vtest.avi frames, the raw outputs of Ultralytics
exports (YOLOv8n and YOLO26n end-to-end trained briefly to copy yolox_nano; RT-DETR-l with random weights
from the current exporter, [1, 300, 6], and from an earlier one, [1, 300, 84]) and the boxes Ultralytics'
predictors made of exactly those arrays (``DetectionPredictor.postprocess``: ``non_max_suppression`` and
``scale_boxes``; ``RTDETRPredictor.postprocess``), in frame pixels. YOLOv8n's class scores under 1e-4 are
stored as 0 (so the file stays small); the reference was computed on the stored arrays.
benchmarks/ultralytics_parity.py wrote it and runs the same comparison on 200+ frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.yolox.decoders import layout_family, make_decoder
from streamd.yolox.preprocess import convention_geometry, resolve_convention

REFERENCE = Path(__file__).parent / "data" / "ultralytics_reference.npz"
IOU_MATCH = 0.999
CORNER_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-5


def _load() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


DATA = _load()
MODELS = sorted({key.split("__")[0] for key in DATA if key.endswith("__layout")})
CASES = sorted({tuple(key.split("__")[:3]) for key in DATA if key.endswith("__boxes")})


def test_the_reference_covers_every_family() -> None:
    assert {layout_family(str(DATA[f"{model}__layout"])) for model in MODELS} == {"ultralytics", "rtdetr"}
    assert {str(DATA[f"{model}__layout"]) for model in MODELS} == {"ultralytics", "end2end", "rtdetr",
                                                                   "rtdetr-queries"}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    inter = ((np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
             * (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0))
    area_a = (a[..., 2] - a[..., 0]).clip(0) * (a[..., 3] - a[..., 1]).clip(0)
    union = area_a + (b[..., 2] - b[..., 0]).clip(0) * (b[..., 3] - b[..., 1]).clip(0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def same_place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU >= 0.999, or corners within 0.001 px: a box of no area (clipped to nothing at the frame's edge, or
    inverted, as an untrained head gives) has no IoU."""
    corners = np.abs(a.astype(np.float64)[:, None] - b.astype(np.float64)[None]).max(axis=-1)
    return (iou(a, b) >= IOU_MATCH) | (corners <= CORNER_TOLERANCE)


@pytest.mark.parametrize(("model", "setting", "frame"), CASES, ids=["-".join(case) for case in CASES])
def test_decoder_gives_ultralytics_boxes(model: str, setting: str, frame: str) -> None:
    layout = str(DATA[f"{model}__layout"])
    width, height = DATA[f"{model}__input"].tolist()
    frame_width, frame_height = DATA[f"{model}__frame_size__{frame}"].tolist()
    conf, nms = (float(part[len(name):]) for part, name in zip(setting.split("_"), ("conf", "iou")))
    decoder = make_decoder(layout, width, height, int(DATA[f"{model}__classes"]), conf, nms, max_detections=300)
    geometry = convention_geometry(resolve_convention("auto", layout_family(layout)), frame_width, frame_height,
                                   width, height)
    detections = decoder.decode([DATA[f"{model}__raw__{frame}"]])
    boxes = geometry.to_frame(detections.boxes_xyxy)
    expected = (DATA[f"{model}__{setting}__{frame}__boxes"], DATA[f"{model}__{setting}__{frame}__scores"],
                DATA[f"{model}__{setting}__{frame}__classes"])
    assert len(expected[0]) > 0 and len(detections) == len(expected[0])
    # One to one: every Ultralytics box has its own streamd box of the same class, place and score.
    allowed = (same_place(expected[0], boxes) & (expected[2][:, None] == detections.class_ids[None])
               & (np.abs(expected[1][:, None] - detections.scores[None]) <= SCORE_TOLERANCE))
    assert matching_size(allowed) == len(expected[0])


def matching_size(allowed: np.ndarray) -> int:
    """Size of a maximum one-to-one matching of rows to columns where ``allowed`` (augmenting paths)."""
    owner = [-1] * allowed.shape[1]

    def place(row: int, seen: set[int]) -> bool:
        for column in np.flatnonzero(allowed[row]):
            if column not in seen:
                seen.add(column)
                if owner[column] < 0 or place(owner[column], seen):
                    owner[column] = row
                    return True
        return False

    return sum(place(row, set()) for row in range(allowed.shape[0]))

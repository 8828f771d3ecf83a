"""The vectorised decoder against a slow, obviously-correct reference, for every layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamd.errors import ModelLayoutError
from streamd.yolox.layout import OutputInfo, boxes_look_decoded, detect_layout
from streamd.yolox.postprocess import YoloxDecoder

INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES = 96, 64, 4
SCORE_THRESHOLD, NMS_THRESHOLD = 0.3, 0.45


def reference_decode(rows: np.ndarray, decoded: bool) -> list[tuple[int, float, tuple[float, ...]]]:
    """Cell by cell in plain Python: grid position, stride, score, then greedy per-class NMS."""
    candidates = []
    cell = 0
    for stride in (8, 16, 32):
        for gy in range(INPUT_HEIGHT // stride):
            for gx in range(INPUT_WIDTH // stride):
                row = [float(v) for v in rows[cell]]
                cell += 1
                class_id = max(range(NUM_CLASSES), key=lambda c: row[5 + c])
                score = row[4] * row[5 + class_id]
                if score <= SCORE_THRESHOLD:
                    continue
                if decoded:
                    cx, cy, w, h = row[:4]
                else:
                    cx, cy = (row[0] + gx) * stride, (row[1] + gy) * stride
                    w, h = math.exp(row[2]) * stride, math.exp(row[3]) * stride
                candidates.append((class_id, score, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    candidates.sort(key=lambda c: -c[1])
    kept: list[tuple[int, float, tuple[float, ...]]] = []
    for class_id, score, box in candidates:
        if all(k[0] != class_id or iou(k[2], box) <= NMS_THRESHOLD for k in kept):
            kept.append((class_id, score, box))
    return kept


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cell_count() -> int:
    return sum((INPUT_HEIGHT // s) * (INPUT_WIDTH // s) for s in (8, 16, 32))


def random_rows(seed: int) -> np.ndarray:
    """Official-export rows (sigmoid-ed scores): mostly background, some strong overlapping cells."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((cell_count(), 5 + NUM_CLASSES), np.float32)
    rows[:, :2] = rng.uniform(-0.5, 1.5, (cell_count(), 2))
    rows[:, 2:4] = rng.uniform(-1.0, 1.5, (cell_count(), 2))
    rows[:, 4] = rng.uniform(0, 0.2, cell_count())
    rows[:, 5:] = rng.uniform(0, 1, (cell_count(), NUM_CLASSES))
    strong = rng.choice(cell_count(), 25, replace=False)
    rows[strong, 4] = rng.uniform(0.5, 1.0, 25)
    # Neighbouring strong cells of one class overlap, so NMS has work to do.
    rows[strong[:10], 5:] = 0.05
    rows[strong[:10], 5] = rng.uniform(0.6, 1.0, 10)
    return rows


def assert_same(detections, expected) -> None:
    assert len(detections) == len(expected) > 0
    for box, score, class_id, (ref_class, ref_score, ref_box) in zip(
            detections.boxes_xyxy, detections.scores, detections.class_ids, expected):
        assert class_id == ref_class
        assert score == pytest.approx(ref_score, rel=1e-5)
        np.testing.assert_allclose(box, ref_box, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_layout_matches_reference(seed: int) -> None:
    rows = random_rows(seed)
    decoder = YoloxDecoder("yolox", INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES, SCORE_THRESHOLD, NMS_THRESHOLD)
    before = rows.copy()
    assert_same(decoder.decode([rows[None]]), reference_decode(rows, decoded=False))
    np.testing.assert_array_equal(rows, before)  # inputs are never mutated


def test_in_graph_decoded_layout_matches_reference() -> None:
    rows = random_rows(3)
    rows[:, 0] = np.random.default_rng(3).uniform(0, INPUT_WIDTH, cell_count())
    rows[:, 1] = np.random.default_rng(4).uniform(0, INPUT_HEIGHT, cell_count())
    rows[:, 2:4] = np.random.default_rng(5).uniform(4, 40, (cell_count(), 2))
    decoder = YoloxDecoder("yolox-decoded", INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES, SCORE_THRESHOLD, NMS_THRESHOLD)
    assert_same(decoder.decode([rows[None]]), reference_decode(rows, decoded=True))
    assert boxes_look_decoded(rows[None]) and not boxes_look_decoded(random_rows(3)[None])


def test_three_head_layout_matches_reference() -> None:
    """Three [1, 5+C, H, W] maps of raw logits, given in a shuffled order."""
    rows = random_rows(6)
    logits = rows.copy()
    logits[:, 4:] = np.log(np.clip(rows[:, 4:], 1e-6, 1 - 1e-6) / (1 - np.clip(rows[:, 4:], 1e-6, 1 - 1e-6)))
    maps, start = [], 0
    for stride in (8, 16, 32):
        h, w = INPUT_HEIGHT // stride, INPUT_WIDTH // stride
        maps.append(logits[start:start + h * w].T.reshape(1, 5 + NUM_CLASSES, h, w).copy())
        start += h * w
    decoder = YoloxDecoder("heads", INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES, SCORE_THRESHOLD, NMS_THRESHOLD)
    assert_same(decoder.decode([maps[2], maps[0], maps[1]]), reference_decode(rows, decoded=False))


def test_nothing_above_threshold_gives_empty_detections() -> None:
    rows = np.zeros((cell_count(), 5 + NUM_CLASSES), np.float32)
    decoder = YoloxDecoder("yolox", INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES, SCORE_THRESHOLD, NMS_THRESHOLD)
    detections = decoder.decode([rows[None]])
    assert len(detections) == 0 and detections.boxes_xyxy.shape == (0, 4)


def test_layout_detection() -> None:
    cells, channels = cell_count(), 5 + NUM_CLASSES
    single = [OutputInfo("output", (1, cells, channels))]
    assert detect_layout(single, INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES) == "yolox"
    heads = [OutputInfo(f"o{s}", (1, channels, INPUT_HEIGHT // s, INPUT_WIDTH // s)) for s in (32, 8, 16)]
    assert detect_layout(heads, INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES) == "heads"


def test_layout_that_fits_nothing_is_a_clear_error() -> None:
    with pytest.raises(ModelLayoutError, match=r"fit no YOLOX layout.*expected one \[B, 126, 9\]"):
        detect_layout([OutputInfo("logits", (1, 1000))], INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES)
    with pytest.raises(ModelLayoutError, match="model.classes"):  # right shape family, wrong class count
        detect_layout([OutputInfo("output", (1, cell_count(), 85))], INPUT_WIDTH, INPUT_HEIGHT, NUM_CLASSES)

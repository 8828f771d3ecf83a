"""detection_map against cases computed by hand. Both accuracy checks (the synthetic accuracy bar
and the quantize fidelity) rest on it, so its numbers are pinned here, not re-derived from it.

COCO's AP: predictions sorted by score, each matched greedily to the best untaken ground truth of
its class with IoU >= t; the precision envelope sampled at the 101 recall points 0, 0.01 ... 1."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.evaluation.detection_map import Boxes, box_iou, mean_average_precision

SQUARE = [0.0, 0.0, 100.0, 100.0]


def boxes(rows: list[list[float]], classes: list[int], scores: list[float] | None = None) -> Boxes:
    return Boxes(np.array(rows, np.float64).reshape(-1, 4), np.array(classes, np.int64),
                 None if scores is None else np.array(scores, np.float64))


def single(prediction: Boxes, truth: Boxes) -> dict[str, float]:
    return mean_average_precision([prediction], [truth])


def test_perfect_predictions_score_one() -> None:
    truth = boxes([SQUARE, [200, 200, 260, 300]], [0, 1])
    result = single(boxes([SQUARE, [200, 200, 260, 300]], [0, 1], [0.9, 0.8]), truth)
    assert result == {"map50": 1.0, "map50_95": 1.0, "classes": 2}


def test_half_recall() -> None:
    """One of two objects found, precision 1: the envelope is 1 up to recall 0.5, then 0, so 51 of
    the 101 recall points (0 ... 0.50) score 1."""
    truth = boxes([SQUARE, [200, 200, 300, 300]], [0, 0])
    result = single(boxes([SQUARE], [0], [0.9]), truth)
    assert result["map50"] == pytest.approx(51 / 101)
    assert result["map50_95"] == pytest.approx(51 / 101)


@pytest.mark.parametrize(("height", "map50", "map50_95"), [
    (51.0, 1.0, 0.1),   # IoU 0.51: matched at 0.50 only, 1 of 10 thresholds
    (50.0, 1.0, 0.1),   # IoU exactly 0.50: the threshold is inclusive
    (49.0, 0.0, 0.0),   # IoU 0.49: no match anywhere
    (75.0, 1.0, 0.6),   # IoU 0.75: matched at 0.50 ... 0.75, 6 of 10
    (76.0, 1.0, 0.6),   # IoU 0.76: still not 0.80
])
def test_iou_just_above_and_below_the_thresholds(height: float, map50: float, map50_95: float) -> None:
    truth = boxes([SQUARE], [0])
    prediction = boxes([[0.0, 0.0, 100.0, height]], [0], [0.9])  # IoU = height / 100
    assert box_iou(prediction.boxes_xyxy, truth.boxes_xyxy)[0, 0] == pytest.approx(height / 100)
    result = single(prediction, truth)
    assert result["map50"] == pytest.approx(map50)
    assert result["map50_95"] == pytest.approx(map50_95)


def test_score_order_decides() -> None:
    """A false positive scored above the true one: precision 1/2 at recall 1, AP 0.5. Scored
    below it: precision 1 is reached at recall 1 first, AP 1."""
    truth = boxes([SQUARE], [0])
    rows = [[300, 300, 400, 400], SQUARE]
    assert single(boxes(rows, [0, 0], [0.9, 0.8]), truth)["map50"] == pytest.approx(0.5)
    assert single(boxes(rows, [0, 0], [0.7, 0.8]), truth)["map50"] == pytest.approx(1.0)


def test_duplicate_is_a_false_positive_after_the_match() -> None:
    """Two boxes on one object: the higher-scored one matches, the other is a false positive ranked
    after recall reached 1, so AP stays 1. And an object matched once cannot be matched again,
    even by a box that overlaps it well enough."""
    truth = boxes([SQUARE], [0])
    assert single(boxes([SQUARE, SQUARE], [0, 0], [0.9, 0.8]), truth)["map50"] == pytest.approx(1.0)
    two_objects = boxes([SQUARE, [200, 200, 300, 300]], [0, 0])
    # Both predictions overlap object 1 (IoU 1 and 0.6); object 2 is missed: recall 1/2, precision
    # 1 then 1/2 -> 51 points at 1.
    result = single(boxes([SQUARE, [0, 0, 100, 60]], [0, 0], [0.9, 0.8]), two_objects)
    assert result["map50"] == pytest.approx(51 / 101)


def test_wrong_class_and_classes_without_ground_truth() -> None:
    """A right box with the wrong class finds nothing; a class with no ground truth is not averaged
    in; a class with ground truth and no prediction counts 0 in the mean."""
    truth = boxes([SQUARE, [200, 200, 300, 300]], [0, 1])
    result = single(boxes([SQUARE, [200, 200, 300, 300], [400, 400, 450, 450]], [0, 1, 5], [0.9, 0.9, 0.9]), truth)
    assert result == {"map50": 1.0, "map50_95": 1.0, "classes": 2}
    result = single(boxes([SQUARE], [1], [0.9]), boxes([SQUARE], [0]))
    assert result["map50"] == 0.0
    result = single(boxes([SQUARE], [0], [0.9]), truth)  # class 1 missed
    assert result["map50"] == pytest.approx(0.5) and result["classes"] == 2


def test_over_several_images() -> None:
    """Detections are pooled over images before ranking: image 1's object found (score 0.9),
    image 2's missed, a false positive in image 2 scored 0.5 -> precision 1 at recall 1/2."""
    truths = [boxes([SQUARE], [0]), boxes([SQUARE], [0])]
    predictions = [boxes([SQUARE], [0], [0.9]), boxes([[300, 300, 400, 400]], [0], [0.5])]
    assert mean_average_precision(predictions, truths)["map50"] == pytest.approx(51 / 101)
    with pytest.raises(ValueError, match="pair up"):
        mean_average_precision(predictions, truths[:1])

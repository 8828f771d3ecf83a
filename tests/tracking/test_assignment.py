"""Matching: the numpy-only solver finds the best assignment, sparse fast path and all."""

from __future__ import annotations

import itertools

import numpy as np

from streamd.evaluation.detection_map import box_iou
from streamd.tracking.assignment import (
    _FORBIDDEN,
    _hungarian_lists,
    _hungarian_vectorised,
    hungarian,
    iou_matrix,
    match,
    match_pairs,
    overlapping_pairs,
)
from tests.tracking.reference import reference_match_pairs


def brute_force_cost(cost: np.ndarray) -> float:
    rows, cols = cost.shape
    return min(sum(cost[r, c] for r, c in zip(range(rows), perm)) for perm in itertools.permutations(range(cols), rows))


def brute_force_margin(similarity: np.ndarray, threshold: float) -> float:
    """The best matching's total of (similarity - threshold), over pairs above the threshold (ByteTrack's
    objective: lap.lapjv with cost_limit), any number of pairs."""
    rows, cols = similarity.shape
    best = 0.0
    for size in range(1, min(rows, cols) + 1):
        for chosen_rows in itertools.combinations(range(rows), size):
            for chosen_cols in itertools.permutations(range(cols), size):
                values = similarity[list(chosen_rows), list(chosen_cols)]
                if np.all(values > threshold):
                    best = max(best, float((values - threshold).sum()))
    return best


def test_hungarian_is_optimal() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, cols = sorted(rng.integers(1, 6, 2))
        cost = rng.random((rows, cols))
        assignment = hungarian(cost)
        assert len(set(assignment.tolist())) == rows
        assert np.isclose(cost[np.arange(rows), assignment].sum(), brute_force_cost(cost))


def test_match_maximises_the_total_margin_over_the_threshold() -> None:
    rng = np.random.default_rng(1)
    for _ in range(600):
        rows, cols = rng.integers(0, 6, 2)
        similarity = rng.random((rows, cols)) * (rng.random((rows, cols)) < 0.6)
        threshold = float(rng.choice([0.0, 0.2, 0.5]))
        matched_rows, matched_cols = match(similarity, threshold)
        assert len(set(matched_rows.tolist())) == len(matched_rows)
        assert len(set(matched_cols.tolist())) == len(matched_cols)
        assert np.all(similarity[matched_rows, matched_cols] > threshold)
        total = float((similarity[matched_rows, matched_cols] - threshold).sum())
        assert np.isclose(total, brute_force_margin(similarity, threshold))


def test_a_strong_pair_is_not_split_to_make_two_weak_ones() -> None:
    # Two overlapping objects (recorded scene 706, frame 111): the front object's track 0 overlaps the
    # merged box 0 by 0.79 and a fragment of the hidden object (box 1) by 0.39; the hidden object's
    # lost track 1 overlaps box 0 by 0.40 and box 1 by too little. Taking the most pairs swapped them;
    # over ByteTrack's threshold of 0.2 the front object keeps its box (0.59 against 0.19 + 0.20).
    similarity = np.array([[0.79, 0.39], [0.40, 0.14]])
    rows, cols = match(similarity, 0.2)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 0}


def test_a_contested_column_is_solved_not_taken_by_the_first_row() -> None:
    # Row 0 could take column 0 or 1, row 1 only column 0: the best matching gives row 1 column 0.
    similarity = np.array([[0.9, 0.8], [0.85, 0.0]])
    rows, cols = match(similarity, 0.2)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_iou_matrix_equals_the_evaluation_iou() -> None:
    rng = np.random.default_rng(2)
    corners = rng.uniform(0, 400, (30, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 120, (30, 2))], axis=1)
    assert np.allclose(iou_matrix(boxes[:20], boxes[10:]), box_iou(boxes[:20], boxes[10:]))
    assert iou_matrix(boxes[:0], boxes).shape == (0, 30)


def test_overlapping_pairs_are_the_nonzero_entries_of_the_iou_matrix_bit_for_bit() -> None:
    # The tracker works on these pairs instead of the matrix: the same floats, in row-major order.
    rng = np.random.default_rng(3)
    for tracks, detections in ((50, 50), (7, 3), (1, 12), (0, 5), (5, 0)):
        low_a, low_b = rng.uniform(0, 300, (2, tracks)), rng.uniform(0, 300, (2, detections))
        high_a, high_b = low_a + rng.uniform(1, 150, (2, tracks)), low_b + rng.uniform(1, 150, (2, detections))
        boxes_a, boxes_b = np.concatenate([low_a, high_a]).T, np.concatenate([low_b, high_b]).T
        matrix = iou_matrix(boxes_a, boxes_b)
        rows, cols, values = overlapping_pairs(low_a, high_a, low_b, high_b)
        expected_rows, expected_cols = matrix.nonzero()
        assert np.array_equal(rows, expected_rows) and np.array_equal(cols, expected_cols)
        assert np.array_equal(values, matrix[expected_rows, expected_cols])
        assert tracks * detections == 0 or rows.size > 0



def test_the_list_and_vectorised_solvers_give_the_same_assignment_ties_included() -> None:
    # Small problems are solved on Python floats, large ones in numpy: the same steps, the same columns.
    rng = np.random.default_rng(4)
    for _ in range(1500):
        rows = int(rng.integers(1, 7))
        cols = int(rng.integers(rows, 2 * rows + 4))
        if rng.random() < 0.5:  # few distinct values: many ties
            cost = rng.integers(-3, 3, (rows, cols)).astype(np.float64) / 4
        else:
            cost = rng.random((rows, cols)) - 0.5
        cost[rng.random((rows, cols)) < 0.3] = _FORBIDDEN
        expected = _hungarian_vectorised(cost)
        assert _hungarian_lists(cost.tolist(), cols) == expected.tolist()
        assert np.array_equal(hungarian(cost), expected)


def test_match_pairs_equals_the_matrix_steps_pair_for_pair() -> None:
    rng = np.random.default_rng(5)
    for _ in range(1500):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        density = rng.choice([0.03, 0.1, 0.3, 0.8])
        values = rng.random(shape) * (rng.random(shape) < density)
        if rng.random() < 0.5:  # ties
            values = np.round(values * 4) / 4
        threshold = float(rng.choice([0.0, 0.2, 0.3, 0.5]))
        rows, cols = (values > threshold).nonzero()
        pair_values = values[rows, cols]
        got = match_pairs(rows, cols, pair_values, shape, threshold)
        expected = reference_match_pairs(rows, cols, pair_values, shape, threshold)
        assert got[0].tolist() == expected[0].tolist() and got[1].tolist() == expected[1].tolist()

"""Box overlap and one-to-one matching, numpy only.

Matching maximises total similarity over pairs above a threshold (what ByteTrack asks of ``lap``).
Tracker matrices are sparse: after gating, most tracks overlap exactly one detection and that
detection no other track. Those pairs are taken directly; only the rows and columns left (objects
crossing or close together, a handful even with 50 objects in view) go through an exact
Hungarian solver, so no assignment library is needed.
"""

from __future__ import annotations

import numpy as np

# A pair below the threshold costs this much: the solver takes as few of them as it can, and they
# are discarded afterwards.
_FORBIDDEN = 1e6


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) intersection over union of xyxy boxes (float64)."""
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None)
    intersection = overlap[..., 0] * overlap[..., 1]
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return intersection / np.maximum(union, 1e-9)


def hungarian(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of a (R, C) matrix with R <= C: the column of each row.

    Shortest augmenting paths with potentials (Kuhn-Munkres, O(R^2 C)); the inner loop over
    columns is vectorised."""
    rows, cols = cost.shape
    if rows > cols:
        raise ValueError(f"hungarian needs rows <= columns, got {rows}x{cols}")
    u = np.zeros(rows + 1)
    v = np.zeros(cols + 1)
    owner = np.zeros(cols + 1, dtype=np.int64)  # row (1-based) assigned to each column; 0: none
    way = np.zeros(cols + 1, dtype=np.int64)
    padded = np.zeros((rows + 1, cols + 1))
    padded[1:, 1:] = cost
    for row in range(1, rows + 1):
        owner[0] = row
        column = 0
        min_slack = np.full(cols + 1, np.inf)
        used = np.zeros(cols + 1, dtype=bool)
        while True:
            used[column] = True
            current = owner[column]
            slack = padded[current, 1:] - u[current] - v[1:]
            free = ~used[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            way[1:][better] = column
            candidates = np.where(free, min_slack[1:], np.inf)
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            u[owner[used]] += delta
            v[used] -= delta
            min_slack[1:][free] -= delta
            column = nxt
            if owner[column] == 0:
                break
        while column:
            previous = way[column]
            owner[column] = owner[previous]
            column = previous
    assignment = np.empty(rows, dtype=np.int64)
    assigned = np.flatnonzero(owner[1:])
    assignment[owner[1:][assigned] - 1] = assigned
    return assignment


def match(similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs that maximise total similarity, each pair above ``threshold``."""
    valid = similarity > threshold
    if not valid.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    row_count = valid.sum(axis=1)
    col_count = valid.sum(axis=0)
    # Unambiguous pairs: the row's only candidate, and that column's only candidate.
    unique = valid & (row_count[:, None] == 1) & (col_count[None, :] == 1)
    rows, cols = np.nonzero(unique)
    open_rows = np.flatnonzero((row_count > 0) & ~unique.any(axis=1))
    if open_rows.size == 0:
        return rows, cols
    # The other rows with every column they could take; no column of an unambiguous pair is among
    # them (such a column is valid for its own row only).
    open_cols = np.flatnonzero(valid[open_rows].any(axis=0))
    sub_valid = valid[np.ix_(open_rows, open_cols)]
    cost = np.where(sub_valid, -similarity[np.ix_(open_rows, open_cols)], _FORBIDDEN)
    transposed = cost.shape[0] > cost.shape[1]
    assignment = hungarian(cost.T if transposed else cost)
    first = np.arange(assignment.shape[0])
    sub_rows, sub_cols = (assignment, first) if transposed else (first, assignment)
    keep = sub_valid[sub_rows, sub_cols]
    return (np.concatenate([rows, open_rows[sub_rows[keep]]]),
            np.concatenate([cols, open_cols[sub_cols[keep]]]))

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
    return iou_columns(*np.asarray(boxes_a, np.float64).T, *np.asarray(boxes_b, np.float64).T)


def iou_columns(ax1: np.ndarray, ay1: np.ndarray, ax2: np.ndarray, ay2: np.ndarray,
                bx1: np.ndarray, by1: np.ndarray, bx2: np.ndarray, by2: np.ndarray) -> np.ndarray:
    """``iou_matrix`` of boxes given as float64 coordinate vectors (A,) and (B,), possibly strided
    views: the tracker has its boxes so and saves building (N, 4) arrays each frame. Areas are
    computed per box and broadcast, the same floats as per pair."""
    width = np.minimum(ax2[:, None], bx2)
    width -= np.maximum(ax1[:, None], bx1)
    height = np.minimum(ay2[:, None], by2)
    height -= np.maximum(ay1[:, None], by1)
    np.maximum(width, 0, out=width)
    np.maximum(height, 0, out=height)
    width *= height  # the intersection
    union = ((ax2 - ax1) * (ay2 - ay1))[:, None] + (bx2 - bx1) * (by2 - by1)
    union -= width
    np.maximum(union, 1e-9, out=union)
    width /= union
    return width


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
    return match_valid(similarity, similarity > threshold)


def match_valid(similarity: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``match`` with the allowed pairs given: the tracker masks out rows and columns of its full
    IoU matrix instead of copying sub-matrices, which gives the same pairs (a row or column with no
    allowed pair takes no part)."""
    row_count = valid.sum(axis=1)
    col_count = valid.sum(axis=0)
    pairs = int(row_count.sum())
    if pairs == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if np.count_nonzero(row_count) == pairs and np.count_nonzero(col_count) == pairs:
        # The usual case: no row or column has two candidates, every pair is unambiguous.
        return np.nonzero(valid)
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

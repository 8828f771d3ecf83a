"""Box overlap and one-to-one matching, numpy only.

Matching maximises the total of (similarity - threshold) over the pairs it takes, each above the
threshold: ByteTrack's objective (``lap.lapjv`` with ``cost_limit``, where leaving a row and a column
unmatched costs as much as the threshold). So a track and a box are left apart when pairing them
would cost a better pair: two objects of one class overlapping, the front one's box is not handed to
the hidden one's track just so that the front one's track can take a fragment of the hidden one.
(Taking the most pairs first, then the most similarity, swapped such tracks: docs/tracking.md.)

Tracker matrices are sparse: after gating, most tracks overlap exactly one detection and that
detection no other track. Those pairs are taken directly (each is worth more than nothing); only the
rows and columns left (objects crossing or close together, a handful even with 50 objects in view)
go through an exact Hungarian solver, so no assignment library is needed.
"""

from __future__ import annotations

import numpy as np

# A pair below the threshold costs this much: never taken, since leaving its row unmatched costs 0.
_FORBIDDEN = 1e6


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) intersection over union of xyxy boxes (float64)."""
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    corners_a, corners_b = np.asarray(boxes_a, np.float64).T, np.asarray(boxes_b, np.float64).T
    return iou_corners(corners_a[:2], corners_a[2:], corners_b[:2], corners_b[2:])


def iou_corners(low_a: np.ndarray, high_a: np.ndarray, low_b: np.ndarray, high_b: np.ndarray) -> np.ndarray:
    """``iou_matrix`` of boxes given as float64 (2, A) / (2, B) corners (x1, y1 rows; x2, y2 rows),
    possibly strided views: the tracker has its boxes so. Both axes go through each step in one
    call, and areas are computed per box and broadcast: the same floats as per pair, in fewer calls."""
    overlap = np.minimum(high_a[:, :, None], high_b[:, None, :])
    overlap -= np.maximum(low_a[:, :, None], low_b[:, None, :])
    np.maximum(overlap, 0, out=overlap)
    intersection = overlap[0] * overlap[1]
    extent_a, extent_b = high_a - low_a, high_b - low_b
    union = (extent_a[0] * extent_a[1])[:, None] + extent_b[0] * extent_b[1]
    union -= intersection
    np.maximum(union, 1e-9, out=union)
    intersection /= union
    return intersection


def overlapping_pairs(low_a: np.ndarray, high_a: np.ndarray, low_b: np.ndarray,
                      high_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of boxes that overlap at all, as ``iou_corners`` takes them: their rows, columns (in
    row-major order) and IoU, the same floats as ``iou_corners``'s. A tracker's matrix is mostly zeros:
    only the overlap along x is computed for every pair, the rest for the pairs that overlap along x."""
    width = np.minimum(high_a[0][:, None], high_b[0])
    width -= np.maximum(low_a[0][:, None], low_b[0])
    width = width.reshape(-1)
    # A flat nonzero and divmod: the 2-D nonzero costs twice as much.
    flat = (width > 0).nonzero()[0]
    rows, cols = np.divmod(flat, low_b.shape[1])
    height = np.minimum(high_a[1].take(rows), high_b[1].take(cols))
    height -= np.maximum(low_a[1].take(rows), low_b[1].take(cols))
    inside = (height > 0).nonzero()[0]
    rows, cols = rows.take(inside), cols.take(inside)
    intersection = width.take(flat.take(inside)) * height.take(inside)
    extent_a, extent_b = high_a - low_a, high_b - low_b
    union = (extent_a[0] * extent_a[1]).take(rows) + (extent_b[0] * extent_b[1]).take(cols)
    union -= intersection
    np.maximum(union, 1e-9, out=union)
    intersection /= union
    return rows, cols, intersection


def hungarian(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of a (R, C) matrix with R <= C: the column of each row.

    Shortest augmenting paths with potentials (Kuhn-Munkres, O(R^2 C)); the inner loop over
    columns is vectorised."""
    rows, cols = cost.shape
    if rows > cols:
        raise ValueError(f"hungarian needs rows <= columns, got {rows}x{cols}")
    # One or two rows (most of the tracker's crowded corners: two objects crossing): every assignment
    # at once, in a few numpy calls instead of the Python loop's tens.
    if rows == 1:
        return np.argmin(cost, axis=1)
    if rows == 2:
        totals = cost[0][:, None] + cost[1]
        totals.reshape(-1)[::cols + 1] = np.inf  # both rows in one column
        return np.array(divmod(int(np.argmin(totals)), cols))
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
    """Row and column indices of the pairs, each above ``threshold``, that maximise the total of
    (similarity - threshold)."""
    rows, cols = (similarity > threshold).nonzero()
    return match_pairs(rows, cols, similarity[rows, cols], similarity.shape, threshold)


def match_pairs(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``match`` with the allowed pairs (all of them above ``threshold``) given as their rows, columns
    (in row-major order) and similarities, of a matrix of ``shape``: the tracker keeps the overlapping
    pairs so (a frame's matrix is mostly zeros). A row or column with no allowed pair takes no part."""
    if rows.size == 0:
        return rows, cols
    # The usual case: no row or column has two candidates, every pair is unambiguous. (Python sets
    # on these few indices are quicker than numpy counts.)
    if len(set(rows.tolist())) == rows.size and len(set(cols.tolist())) == rows.size:
        return rows, cols
    valid = np.zeros(shape, bool)
    valid[rows, cols] = True
    similarity = np.zeros(shape)
    similarity[rows, cols] = values
    row_count = np.add.reduce(valid, axis=1)
    col_count = np.add.reduce(valid, axis=0)
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
    # Each row may also take one of its own "unmatched" columns, at no cost: a pair is taken only where
    # it adds to the total margin. (Rows <= columns then, as the solver needs.)
    cost = np.zeros((open_rows.size, open_cols.size + open_rows.size))
    cost[:, :open_cols.size] = np.where(sub_valid, threshold - similarity[np.ix_(open_rows, open_cols)], _FORBIDDEN)
    assignment = hungarian(cost)
    sub_rows = (assignment < open_cols.size).nonzero()[0]
    sub_cols = assignment[sub_rows]
    keep = sub_valid[sub_rows, sub_cols]
    return (np.concatenate([rows, open_rows[sub_rows[keep]]]),
            np.concatenate([cols, open_cols[sub_cols[keep]]]))

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

import math

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
    """Minimum-cost assignment of a (R, C) matrix of finite costs with R <= C: the column of each row.

    Shortest augmenting paths with potentials (Kuhn-Munkres, O(R^2 C)). The tracker's problems are a
    few rows (objects crossing): those are solved on Python floats (``_hungarian_lists``), which at that
    size costs a tenth of numpy's calls; larger ones with the inner loop over columns vectorised. Both
    take the same float steps in the same order and the first column of equal cost, so they give the
    same assignment (tests/tracking/test_assignment.py checks them against each other, ties included)."""
    rows, cols = cost.shape
    if rows > cols:
        raise ValueError(f"hungarian needs rows <= columns, got {rows}x{cols}")
    if rows * cols <= _LIST_SOLVER_CELLS:
        return np.array(_hungarian_lists(cost.tolist(), cols), np.int64)
    return _hungarian_vectorised(cost)


# Up to this many cells a problem is solved on Python floats: about where the Python inner loop over the
# columns starts to cost more than numpy's calls per step.
_LIST_SOLVER_CELLS = 1024


def _hungarian_lists(cost: list[list[float]], cols: int) -> list[int]:
    """``hungarian`` of R rows of ``cols`` Python floats (R <= cols, at least one row)."""
    rows = len(cost)
    inf = math.inf
    if rows == 1:
        costs = cost[0]
        return [costs.index(min(costs))]  # the first column of the least cost, as argmin
    if rows == 2:
        # Every pair of columns (the first of the least total in row-major order, as the vectorised argmin).
        best, best_pair = inf, [0, 1]
        second = cost[1]
        for first_column, first in enumerate(cost[0]):
            for second_column, value in enumerate(second):
                total = first + value
                if total < best and first_column != second_column:
                    best, best_pair = total, [first_column, second_column]
        return best_pair
    u = [0.0] * (rows + 1)
    v = [0.0] * (cols + 1)
    owner = [0] * (cols + 1)  # row (1-based) assigned to each column; 0: none
    way = [0] * (cols + 1)
    columns = range(1, cols + 1)
    for row in range(1, rows + 1):
        owner[0] = row
        column = 0
        min_slack = [inf] * (cols + 1)
        used = [False] * (cols + 1)
        while True:
            used[column] = True
            current = owner[column]
            costs, potential = cost[current - 1], u[current]
            delta, following = inf, 0
            for candidate in columns:
                if used[candidate]:
                    continue
                slack = costs[candidate - 1] - potential - v[candidate]
                if slack < min_slack[candidate]:
                    min_slack[candidate] = slack
                    way[candidate] = column
                if min_slack[candidate] < delta:
                    delta, following = min_slack[candidate], candidate
            for index in range(cols + 1):
                if used[index]:
                    u[owner[index]] += delta
                    v[index] -= delta
                else:
                    min_slack[index] -= delta
            column = following
            if owner[column] == 0:
                break
        while column:
            previous = way[column]
            owner[column] = owner[previous]
            column = previous
    assignment = [0] * rows
    for index in columns:
        if owner[index]:
            assignment[owner[index] - 1] = index - 1
    return assignment


def _hungarian_vectorised(cost: np.ndarray) -> np.ndarray:
    """``hungarian`` with the inner loop over columns in numpy, for problems too large for Python floats."""
    rows, cols = cost.shape
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
    row_list, col_list = rows.tolist(), cols.tolist()
    if len(set(row_list)) == len(row_list) and len(set(col_list)) == len(col_list):
        return rows, cols
    # A few tens of pairs: counted and sorted out on Python lists, a tenth of the numpy calls' cost.
    row_count: dict[int, int] = {}
    col_count: dict[int, int] = {}
    for row in row_list:
        row_count[row] = row_count.get(row, 0) + 1
    for col in col_list:
        col_count[col] = col_count.get(col, 0) + 1
    # Unambiguous pairs: the row's only candidate, and that column's only candidate (in row-major order).
    # The other pairs are those of the open rows, with every column they could take (no column of an
    # unambiguous pair is among them: such a column is valid for its own row only).
    matched_rows: list[int] = []
    matched_cols: list[int] = []
    open_pairs = []
    for row, col, value in zip(row_list, col_list, values.tolist()):
        if row_count[row] == 1 and col_count[col] == 1:
            matched_rows.append(row)
            matched_cols.append(col)
        else:
            open_pairs.append((row, col, value))
    open_rows = sorted({row for row, _, _ in open_pairs})
    open_cols = sorted({col for _, col, _ in open_pairs})
    row_at = {row: index for index, row in enumerate(open_rows)}
    col_at = {col: index for index, col in enumerate(open_cols)}
    # Each row may also take one of its own "unmatched" columns, at no cost: a pair is taken only where
    # it adds to the total margin. (Rows <= columns then, as the solver needs.)
    width = len(open_cols)
    cost = [[_FORBIDDEN] * width + [0.0] * len(open_rows) for _ in open_rows]
    for row, col, value in open_pairs:
        cost[row_at[row]][col_at[col]] = threshold - value
    if len(open_rows) * (width + len(open_rows)) <= _LIST_SOLVER_CELLS:
        assignment = _hungarian_lists(cost, width + len(open_rows))
    else:
        assignment = _hungarian_vectorised(np.array(cost)).tolist()
    for index, col in enumerate(assignment):
        # A pair taken: a column of the matrix (not the row's own "unmatched" one) and an allowed pair.
        if col < width and cost[index][col] != _FORBIDDEN:
            matched_rows.append(open_rows[index])
            matched_cols.append(open_cols[col])
    return np.array(matched_rows, np.intp), np.array(matched_cols, np.intp)

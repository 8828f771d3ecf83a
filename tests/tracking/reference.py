"""The tracker's earlier implementations of steps since rewritten for speed, kept as the reference the
current ones must equal bit for bit (tests/tracking/test_replay_equality.py, test_assignment.py)."""

from __future__ import annotations

import numpy as np

from streamd.tracking import bytetrack
from streamd.tracking.assignment import _FORBIDDEN, _hungarian_vectorised
from streamd.tracking.bytetrack import CONTESTED_IOU, CONTESTED_SHARE, NEW_ID_CLEAR_IOU, NEW_ID_HOLD_FRAMES, ByteTracker


def reference_match_pairs(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                          threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """match_pairs as numpy steps on the whole matrix, solved by the vectorised solver."""
    if rows.size == 0:
        return rows, cols
    if len(set(rows.tolist())) == rows.size and len(set(cols.tolist())) == rows.size:
        return rows, cols
    valid = np.zeros(shape, bool)
    valid[rows, cols] = True
    similarity = np.zeros(shape)
    similarity[rows, cols] = values
    row_count = np.add.reduce(valid, axis=1)
    col_count = np.add.reduce(valid, axis=0)
    unique = valid & (row_count[:, None] == 1) & (col_count[None, :] == 1)
    rows, cols = np.nonzero(unique)
    open_rows = np.flatnonzero((row_count > 0) & ~unique.any(axis=1))
    if open_rows.size == 0:
        return rows, cols
    open_cols = np.flatnonzero(valid[open_rows].any(axis=0))
    sub_valid = valid[np.ix_(open_rows, open_cols)]
    cost = np.zeros((open_rows.size, open_cols.size + open_rows.size))
    cost[:, :open_cols.size] = np.where(sub_valid, threshold - similarity[np.ix_(open_rows, open_cols)], _FORBIDDEN)
    assignment = _hungarian_vectorised(cost)
    sub_rows = (assignment < open_cols.size).nonzero()[0]
    sub_cols = assignment[sub_rows]
    keep = sub_valid[sub_rows, sub_cols]
    return (np.concatenate([rows, open_rows[sub_rows[keep]]]),
            np.concatenate([cols, open_cols[sub_cols[keep]]]))


class ReferenceTracker(ByteTracker):
    """A ByteTracker with the earlier steps (``use_reference`` puts the module-level ones in place)."""

    def _contested(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], matched_dets: np.ndarray,
                   matched_tracks: np.ndarray, keep: np.ndarray, frame_index: int) -> np.ndarray:
        # On the whole (tracks, boxes) matrix of weighted IoU.
        pair_tracks, pair_dets, pair_iou = pairs
        iou = np.zeros((self._ids.shape[0], int(max(pair_dets.max(), matched_dets.max())) + 1))
        iou[pair_tracks, pair_dets] = pair_iou
        rival = iou[:, matched_dets]
        columns = np.arange(matched_dets.size)
        own = rival[matched_tracks, columns]
        rival[matched_tracks, columns] = 0.0
        rival[self._ids == 0] = 0.0
        strongest = np.maximum.reduce(rival, axis=0)
        contested = (strongest > CONTESTED_IOU) & (strongest >= CONTESTED_SHARE * own)
        unpublished = self._ids[matched_tracks] < 0
        if np.count_nonzero(unpublished):
            young = frame_index - self._first_index[matched_tracks] < NEW_ID_HOLD_FRAMES
            contested |= unpublished & young & (strongest > NEW_ID_CLEAR_IOU)
        for column in (contested & unpublished).nonzero()[0]:
            track, claimant = matched_tracks[column], int(rival[:, column].argmax())
            if (self._ids[claimant] > 0 and self._lost[claimant] and keep[claimant]
                    and self._classes[claimant] == self._classes[track] and self._look_alike(claimant, track)):
                self._take_lost_identity(track, claimant, keep)
                contested[column] = False
        return contested


def use_reference(monkeypatch) -> None:
    """The module-level steps the tracker calls, as they were (pytest's monkeypatch undoes it)."""
    monkeypatch.setattr(bytetrack, "match_pairs", reference_match_pairs)

"""ByteTrack (Zhang et al., 2022) for one source: every detection box is associated, not only the sure ones.

Per frame, after a Kalman prediction of every track over the source frames that passed:
1. high-score detections (>= ``high_score_threshold``) against every confirmed track, running or
   lost (IoU > ``match_iou_threshold``);
2. low-score detections against the running tracks still unmatched (IoU > ``LOW_MATCH_IOU``): an
   object that is partly hidden or blurred keeps its track instead of breaking it;
3. a high-score detection still unmatched and at least ``new_track_score_threshold`` continues a
   lost track of its class whose predicted centre is near (``LOST_RECOVERY_RADIUS``: an object back
   from behind another, off its prediction);
4. unconfirmed tracks (seen once) against the high-score detections left (IoU > ``UNCONFIRMED_MATCH_IOU``);
5. a sure detection still unmatched starts an unconfirmed track; it is confirmed when matched again
   (a box duplicating a tracked box under another class: after ``DUPLICATE_CONFIRM_MATCHES`` matches).
Running tracks left unmatched become lost; a lost track is dropped after
``lost_track_buffer_frames`` source frames without a detection, or up to ``HIDDEN_BUFFER_FACTOR``
times that while its predicted box lies behind a box matched in the frame.

An id is published only where the association is clear (``withhold_contested_ids``): a box that
another track of its class also claims (``CONTESTED_IOU``, ``CONTESTED_SHARE``) goes out without one
until the claim ends, and a confirmed track gets its id when first published, which is held back while
another track of its class touches its box (``NEW_ID_CLEAR_IOU``), for at most ``NEW_ID_HOLD_FRAMES``,
so one that a lost track of its class and colours claims before then, or would recover (step 3) when it
is shown, takes that lost track's id instead of a new one. Tracks of different classes (``SAME_CLASS_SHARE``)
never contest a box: a person and what they carry, or a car in front of a truck, each keep their ids.

Where the frame's pixels are at hand, each box's colour signature (``appearance``) weighs the IoU
of the pairs in 1, 2 and 4 and gates step 3, which then reaches further for a box of the track's colours:
objects that overlapped and part again keep their ids, and one back from behind another finds its own.

Departures from the paper's code, each for a reason: association prefers the track's class
(``OTHER_CLASS_WEIGHT``) and a box duplicating a tracked one under another class starts no track
(``DUPLICATE_IOU``) until it persists; the filter's state is
centre, width and height (BoT-SORT's variant) rather than aspect ratio; ids are given on
first publication, so they count up without gaps; and the clock is the source's frame index, so frames
dropped before inference (a gap in ``frame_index``) are predicted across, and a pause in capture
(a reconnect, a stall: ``capture_time`` jumps while the index does not) counts as the frames it lasted.

The constants below were chosen on recorded synthetic scenes; docs/tracking.md ("How the values were
chosen") has the evidence and the held-out accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamd.config.schema import TrackingConfig
from streamd.tracking import appearance as looks
from streamd.tracking import kalman
from streamd.tracking.assignment import iou_matrix, match, match_pairs, overlapping_pairs

# ByteTrack's own values: its second association accepts IoU > 0.5, its unconfirmed one IoU > 0.3.
LOW_MATCH_IOU = 0.5
UNCONFIRMED_MATCH_IOU = 0.3
# The source's frame period is learned from capture times; a gap up to this many frames updates it.
_PERIOD_SAMPLE_MAX_FRAMES = 4
_PERIOD_SMOOTHING = 0.1
# A box of another class than its track counts this much of its IoU: a detector that changes its mind
# about a partly hidden object keeps the track, yet two overlapping objects of different classes each keep
# their own (class-blind and class-only matching both made more ID switches: docs/tracking.md).
OTHER_CLASS_WEIGHT = 0.8
# Class-aware NMS can box one object under two classes: an unmatched box overlapping a matched box (or a
# surer new one) by more than this is that duplicate. Of the same class it starts no track; of another
# class its track is confirmed only after DUPLICATE_CONFIRM_MATCHES matches in a row: a second label
# that flickers over an object for a few frames gets no id of its own, one the detector keeps giving (a
# parked vehicle boxed as car and truck) does, so a class filter finds it.
DUPLICATE_IOU = 0.5
DUPLICATE_CONFIRM_MATCHES = 10
# Lost-track recovery: an object back from behind another comes back off its prediction (its visible box
# shrank and drifted while it disappeared). A sure new box of a lost track's class within this many box
# sizes (the larger box, per axis) of the track's predicted centre continues it; wider made wrong links.
LOST_RECOVERY_RADIUS = 1.5
# ...only a box within this factor of the track's full size (the largest of its recent sizes, which each
# observation lets shrink by FULL_SIZE_DECAY): a fragment of a large neighbour must not take the track of
# a small object that went behind it.
RECOVERY_SIZE_RATIO = 2.0
FULL_SIZE_DECAY = 0.97
# A lost track whose predicted box is more than HIDDEN_COVER covered by a box matched in the frame is
# likely behind that object: it is kept up to this many times ``lost_track_buffer_frames`` while so
# covered (a longer buffer for every lost track made wrong links elsewhere).
HIDDEN_BUFFER_FACTOR = 1.5
HIDDEN_COVER = 0.5
# A track's class is the vote of its boxes, each earlier one weighing this much less per new one: a
# detector that boxes one object as a square, then a cross, keeps the track's usual class.
CLASS_VOTE_DECAY = 0.9
# Colour signatures (streamd.tracking.appearance), where the frame's pixels are at hand.
APPEARANCE_GATE = 0.1  # a pair sharing less of its colours is not matched at all
APPEARANCE_WEIGHT = 0.3  # a pair's IoU counts (1 - APPEARANCE_WEIGHT) + APPEARANCE_WEIGHT * similarity
# A track's signature: a running mean, this much of the old per new box, of only the boxes no other
# track's prediction touches (a box over two objects would blend them).
APPEARANCE_MOMENTUM = 0.9
RECOVERY_LOOK_GATE = 0.3  # the lost-track recovery continues only a box sharing this much of its colours
LOOK_SAME = 0.7  # "the same colours": recovery up to RECOVERY_RADIUS_SAME_LOOK box sizes off the prediction
RECOVERY_RADIUS_SAME_LOOK = 3.0
# Where objects overlap, the detector's box often follows the front object, and the track taking it may be
# the other object's. A matched box that another confirmed track of its class overlaps by more than
# CONTESTED_IOU and by CONTESTED_SHARE of its own track's overlap (weighted IoU) goes out without an id.
# Two tracks are of one class when they share a class that makes at least SAME_CLASS_SHARE of each one's
# class votes (the detector often flips the class of objects piled up; a person never was the cup they hold).
SAME_CLASS_SHARE = 0.05
CONTESTED_IOU = 0.1
CONTESTED_SHARE = 0.3  # lower withholds more ids: fewer switches, lower MOTA
# A track whose id was never published is held back while another track of its class touches its box
# (weighted IoU above this), for at most NEW_ID_HOLD_FRAMES source frames from its first box: such a box
# is often a fragment of the tracked object, or an object back that a lost track will claim.
NEW_ID_CLEAR_IOU = 0.0
NEW_ID_HOLD_FRAMES = 5
# A never-published track whose rival is a lost track of its class sharing this much of its colours is
# that lost track's object, back where the recovery (step 3) did not reach: it takes that id and age.
MERGE_LOOK_GATE = 0.3
UNPUBLISHED = -1  # the id of a confirmed track not yet published (0: unconfirmed; ids start at 1)
# When a withheld box is shown again, its track and another of its class exchange identities (not the
# Kalman state, which follows the boxes) if each one's colours, learned before the contest, fit the
# other's box better by this much in sum. The ids were withheld meanwhile: subscribers see no exchange.
RELEASE_SWAP_MARGIN = 0.1
# Where colours cannot tell the two apart (sharing LOOK_SAME, or none: NVDEC frames), where each was heading
# when last shown with its id decides; distances in box sizes count this much against the margin.
RELEASE_MOTION_WEIGHT = 0.3
_IDENTITY_FIELDS = ("_ids", "_first_index", "_look", "_has_look", "_votes", "_classes", "_full_size",
                    "_free_motion")
NO_TRACK = -1  # track id of a detection that belongs to no confirmed track (ids start at 1)


@dataclass(frozen=True)
class TrackUpdate:
    """One frame's tracking result, aligned with the frame's detections."""

    track_ids: np.ndarray  # (K,) int64, NO_TRACK for a detection of no confirmed track, or a contested one
    ages_frames: np.ndarray  # (K,) int64, source frames since the track's first detection
    active: int  # confirmed tracks matched in this frame
    started: int  # ids published for the first time in this frame
    ended: int  # tracks whose id was published dropped in this frame (lost too long, or the tracker reset)
    withheld: int = 0  # boxes of confirmed tracks published without an id: another track claims them


class ByteTracker:
    """Tracks of one source. ``update`` must see that source's frames in frame order."""

    def __init__(self, config: TrackingConfig) -> None:
        self._config = config
        self._next_id = 1
        self._last_index: int | None = None
        self._last_time = 0.0
        self._period_seconds = 0.0  # learned from capture times; 0 until two close frames were seen
        self._clear()

    def _clear(self) -> None:
        self._mean = np.zeros((8, 0))  # Kalman state, tracks as the last axis (streamd.tracking.kalman)
        self._covariance = np.zeros((3, 4, 0))
        self._ids = np.zeros(0, np.int64)  # 0 while unconfirmed, UNPUBLISHED until first published
        self._classes = np.zeros(0, np.int64)
        self._lost = np.zeros(0, bool)
        self._first_index = np.zeros(0, np.int64)
        self._last_seen = np.zeros(0, np.int64)
        self._votes = np.zeros((0, 1))
        self._one_hot = np.eye(1)  # row c: a vote for class c, as wide as the votes
        self._full_size = np.zeros(0)
        self._look = np.zeros((0, looks.DIMENSIONS))
        self._has_look = np.zeros(0, bool)
        self._withheld = np.zeros(0, bool)  # its box was published without its id in its last match
        self._matches_to_confirm = np.zeros(0, np.int64)  # of an unconfirmed track: matches it still needs
        self._free_motion = np.zeros((0, 9))  # Kalman mean and frame index when last shown with its id

    @property
    def track_count(self) -> int:
        """Tracks held: running, lost and unconfirmed."""
        return int(self._ids.shape[0])

    def _elapsed_frames(self, frame_index: int, capture_time: float) -> int:
        """Source frames since the previous update: the index gap, or the capture-time gap in frames
        when that is longer (a source that paused delivers no frames, so its index does not jump)."""
        frames = frame_index - self._last_index
        seconds = capture_time - self._last_time
        if self._period_seconds > 0:
            frames = max(frames, round(seconds / self._period_seconds))
        if 0 < frame_index - self._last_index <= _PERIOD_SAMPLE_MAX_FRAMES and seconds > 0:
            sample = seconds / (frame_index - self._last_index)
            self._period_seconds = (sample if self._period_seconds == 0 else
                                    self._period_seconds + _PERIOD_SMOOTHING * (sample - self._period_seconds))
        return frames

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, frame_index: int,
               capture_time: float, signatures: np.ndarray | None = None) -> TrackUpdate:
        """Associate one frame's detections; returns their track ids and ages. ``signatures``: the
        boxes' colour signatures (``appearance.colour_signatures``), None where the pixels are not at hand."""
        # Tracker arrays are small (tens of rows), so the cost is the count of numpy calls, not their
        # work: each value below is computed once a frame and shared by the stages, state is
        # updated in place (tracks as the last axis: contiguous rows), and association works on the
        # pairs of boxes that overlap at all, a few per box, rather than on the whole IoU matrix.
        ended = 0
        first_frame = self._last_index is None
        if not first_frame:
            elapsed = self._elapsed_frames(frame_index, capture_time)
            if frame_index <= self._last_index or elapsed > self._config.lost_track_buffer_frames:
                # The source started over (or was away longer than any track is kept): a new scene.
                ended = int(np.count_nonzero(self._ids > 0))
                self._clear()
                first_frame = True
            elif self._ids.shape[0]:
                if np.count_nonzero(self._lost):
                    np.copyto(self._mean[6:], 0.0, where=self._lost)  # a lost box keeps its size (ByteTrack zeroes dh)
                kalman.predict_in_place(self._mean, self._covariance, elapsed)
        self._last_index, self._last_time = frame_index, capture_time

        count = scores.shape[0]
        tracks = self._ids.shape[0]
        det_track = np.empty(count, np.int64)  # np.full costs twice empty + fill at these sizes
        det_track.fill(-1)
        if count:
            # Coordinates as rows (x1, y1, x2, y2): the IoU's inner loops then run over contiguous
            # memory (over a column of (K, 4) boxes they took twice as long at 50 objects).
            corners = np.array(boxes_xyxy.T, np.float64, order="C")
            boxes = corners.T
            classes = class_ids.astype(np.int64)
            top_class = int(np.maximum.reduce(classes))  # ndarray.max's wrapper costs more
            if top_class >= self._votes.shape[1]:
                self._grow_votes(top_class + 1)
            size = corners[2:] - corners[:2]  # xyxy -> centre and size (xywh), once for every stage
            xywh_rows = np.concatenate([corners[:2] + size / 2, size])
            xywh = xywh_rows.T
            det_size = np.sqrt(xywh_rows[2] * xywh_rows[3])
            sure = scores >= self._config.new_track_score_threshold
        any_unconfirmed = False
        if tracks and count:
            # The predictions' xywh as corners, coordinate vectors.
            centre, half = self._mean[:2], self._mean[2:4] / 2
            # The pairs that overlap at all (a few per box: the matrix is sparse) are the only ones that can
            # match; their weights and the association's tests run over them alone.
            pair_tracks, pair_dets, pair_iou = overlapping_pairs(centre - half, centre + half, corners[:2], corners[2:])
            crowded = np.bincount(pair_dets, minlength=count) > 1  # boxes touching two or more predictions
            pair_iou *= np.where(self._classes[pair_tracks] == classes[pair_dets], 1.0, OTHER_CLASS_WEIGHT)
            # Tracks with colours; all of them as a rule (only tracks started without signatures have none).
            looks_known = np.count_nonzero(self._has_look) if signatures is not None else 0
            if looks_known:
                self._weigh_by_look(pair_iou, pair_tracks, pair_dets, signatures, looks_known == tracks)
            pairs = (pair_tracks, pair_dets, pair_iou)
            high = scores >= self._config.high_score_threshold
            confirmed = self._ids != 0
            any_unconfirmed = np.count_nonzero(confirmed) < tracks  # most frames have none
            matched = np.zeros(tracks, bool)
            self._associate(pairs, det_track, matched, confirmed if any_unconfirmed else None, high,
                            self._config.match_iou_threshold)
            low = ~high  # none matched yet: the first association took high-score boxes only
            if np.count_nonzero(low):
                self._associate(pairs, det_track, matched, confirmed & ~(self._lost | matched), low, LOW_MATCH_IOU)
            free = ((det_track < 0) & sure).nonzero()[0]  # usually none: every sure box continued a track
            if free.size:
                self._recover_lost(det_track, matched, confirmed, free, xywh, det_size, classes, signatures)
            if any_unconfirmed:
                self._associate(pairs, det_track, matched, ~confirmed, high & (det_track < 0), UNCONFIRMED_MATCH_IOU)

        matched_dets = (det_track >= 0).nonzero()[0]  # flatnonzero's wrapper costs more than this call
        matched_tracks = det_track[matched_dets]
        started = 0
        waiting = None  # over matched_dets: boxes of unconfirmed tracks still waiting for their confirmation
        if matched_tracks.size:
            # np.take: indexing the last axis with [..., tracks] would give arrays that are not C-contiguous.
            mean = self._mean.take(matched_tracks, axis=1)
            covariance = self._covariance.take(matched_tracks, axis=2)
            kalman.update_in_place(mean, covariance, xywh_rows.take(matched_dets, axis=1))
            self._mean[:, matched_tracks], self._covariance[..., matched_tracks] = mean, covariance
            self._full_size[matched_tracks] = np.maximum(det_size[matched_dets],
                                                         FULL_SIZE_DECAY * self._full_size[matched_tracks])
            # take(axis=0): a third of the cost of [rows] on 2-D arrays.
            votes = self._votes.take(matched_tracks, axis=0)
            votes *= CLASS_VOTE_DECAY
            votes += self._one_hot.take(classes[matched_dets], axis=0)  # + 1 for the box's class
            self._votes[matched_tracks] = votes
            self._classes[matched_tracks] = votes.argmax(axis=1)
            self._lost[matched_tracks] = False
            self._last_seen[matched_tracks] = frame_index
            crowded_matched = crowded[matched_dets]
            if signatures is not None:
                # Only a box that no other track's prediction touches describes its object alone.
                alone = matched_dets[~crowded_matched]
                self._observe_look(det_track[alone], signatures.take(alone, axis=0), looks_known == tracks)
            if any_unconfirmed:
                unconfirmed = matched_tracks[self._ids[matched_tracks] == 0]
                self._matches_to_confirm[unconfirmed] -= 1
                self._ids[unconfirmed[self._matches_to_confirm[unconfirmed] <= 0]] = UNPUBLISHED  # confirmed
                if unconfirmed.size:
                    waiting = self._ids[matched_tracks] == 0
                    if not np.count_nonzero(waiting):
                        waiting = None

        # Unmatched: running tracks become lost; unconfirmed ones go; lost ones go when too old.
        keep = None
        if tracks:
            dropped_out = self._ids != 0
            dropped_out[matched_tracks] = False  # confirmed and unmatched
            self._lost |= dropped_out
            expired = self._lost & (self._last_seen < frame_index - self._config.lost_track_buffer_frames)
            # Unconfirmed tracks unmatched go (matched ones may still wait for their confirmation).
            keep = self._ids != 0
            if any_unconfirmed:
                keep[matched_tracks] = True
            if np.count_nonzero(expired):
                if matched_dets.size:
                    self._keep_hidden(expired, corners[:, matched_dets], frame_index)
                keep &= ~expired
                ended += np.count_nonzero(expired & (self._ids > 0))

        # Output before tracks are removed or added (indices refer to the tracks of this frame). A matched
        # track is confirmed by now unless it is a duplicate's (``waiting``); its detection has its id unless
        # contested.
        track_ids = np.empty(count, np.int64)
        track_ids.fill(NO_TRACK)
        ages = np.zeros(count, np.int64)
        withheld = 0
        if matched_dets.size:
            hidden = waiting  # None, or over matched_dets: the boxes published without their track's id
            withhold = tracks and self._config.withhold_contested_ids
            if withhold:
                # Only a box touching two predictions can be contested (most boxes touch one).
                if waiting is not None:
                    crowded_matched &= ~waiting
                claimed = matched_dets[crowded_matched]
                contested = claimed
                if claimed.size:
                    claim_holds = self._contested(self._rival_pairs(pairs, det_track), claimed, det_track[claimed],
                                                  keep, frame_index)
                    contested = claimed[claim_holds]
                    withheld = contested.size
                    if withheld:
                        crowded_matched[crowded_matched] = claim_holds  # now: contested, among matched_dets
                        hidden = crowded_matched if hidden is None else hidden | crowded_matched
            shown = matched_dets if hidden is None else matched_dets[~hidden]
            if withhold:
                if np.count_nonzero(self._withheld):
                    self._swap_on_release(det_track, shown, contested, signatures, xywh, frame_index)
                    self._withheld[matched_tracks] = False
                if withheld:
                    self._withheld[det_track[contested]] = True
            shown_tracks = det_track[shown]
            # Usually every matched box is shown: the rows just updated are the shown tracks' states.
            self._free_motion[shown_tracks, :8] = (mean if shown is matched_dets else self._mean[:, shown_tracks]).T
            self._free_motion[shown_tracks, 8] = frame_index
            first_shown = self._ids[shown_tracks] < 0
            if np.count_nonzero(first_shown):
                if keep is not None:
                    self._claim_lost_ids(shown[first_shown], det_track, keep, xywh, det_size, classes, signatures)
                started += self._confirm(shown_tracks[self._ids[shown_tracks] < 0])
            track_ids[shown] = self._ids[shown_tracks]
            ages[matched_dets] = frame_index - self._first_index[matched_tracks]

        if keep is not None and np.count_nonzero(keep) < tracks:
            self._select(keep)
        if not count:
            new = matched_dets
        elif tracks and free.size == 0:
            new = free  # no sure box was left for the recovery, and none has been freed since
        else:
            new = ((det_track < 0) & sure).nonzero()[0]
        second_label = np.zeros(new.size, bool)  # duplicates of a box of another class
        if new.size and matched_dets.size:
            overlap = iou_matrix(boxes[new], boxes[matched_dets]) > DUPLICATE_IOU
            if np.count_nonzero(overlap):
                kept, second_label = _duplicates(overlap, classes[new], classes[matched_dets])
                new, second_label = new[kept], second_label[kept]
        if new.size > 1:
            # The same among the new boxes themselves: the surest one starts the track.
            order = np.argsort(-scores[new], kind="stable")
            new, second_label = new[order], second_label[order]
            # Row: a box, column: a surer one.
            overlap = np.triu(iou_matrix(boxes[new], boxes[new]), 1).T > DUPLICATE_IOU
            if np.count_nonzero(overlap):
                kept, duplicate = _duplicates(overlap, classes[new], classes[new])
                new, second_label = new[kept], (second_label | duplicate)[kept]
        active = matched_tracks.size if waiting is None else matched_tracks.size - int(np.count_nonzero(waiting))
        if new.size:
            self._add(xywh[new], det_size[new], classes[new], frame_index,
                      np.where(second_label, DUPLICATE_CONFIRM_MATCHES, 1))
            added = np.arange(self._ids.shape[0] - new.size, self._ids.shape[0])
            if signatures is not None:
                self._observe_look(added, signatures[new])
            if first_frame:
                # ByteTrack confirms the first frame's tracks at once: there is nothing to confuse them with.
                at_once = ~second_label
                started += self._confirm(added[at_once])
                track_ids[new[at_once]] = self._ids[added[at_once]]
                active += int(np.count_nonzero(at_once))
        # Confirmed tracks seen this frame: the matched ones and, on a first frame, the new ones.
        return TrackUpdate(track_ids, ages, active, started, ended, withheld)

    def _rival_pairs(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                     det_track: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``pairs`` with the IoU zeroed where the track and the box's own track are of different classes
        (no class makes SAME_CLASS_SHARE of both one's and the other's votes): such a track claims no box."""
        pair_tracks, pair_dets, pair_iou = pairs
        votes = self._votes
        seen_as = votes >= SAME_CLASS_SHARE * np.add.reduce(votes, axis=1, keepdims=True)
        # A box of no track (owner -1) reads the last row: _contested looks at matched boxes only.
        alike = (seen_as[pair_tracks] & seen_as[det_track[pair_dets]]).any(axis=1)
        return pair_tracks, pair_dets, np.where(alike, pair_iou, 0.0)

    def _associate(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], det_track: np.ndarray,
                   matched: np.ndarray, track_mask: np.ndarray | None, det_mask: np.ndarray, threshold: float) -> None:
        """Match the tracks of ``track_mask`` (None: all) and the detections of ``det_mask`` on IoU; marks
        ``matched``. ``pairs``: the overlapping pairs' tracks, detections and weighted IoU."""
        pair_tracks, pair_dets, pair_iou = pairs
        valid = pair_iou > threshold  # thresholds are above 0: only overlapping pairs can pass
        if track_mask is not None:
            valid &= track_mask[pair_tracks]
        valid &= det_mask[pair_dets]
        rows, cols = match_pairs(pair_tracks[valid], pair_dets[valid], pair_iou[valid], (matched.size, det_mask.size),
                                 threshold)
        det_track[cols] = rows
        matched[rows] = True

    def _weigh_by_look(self, pair_iou: np.ndarray, pair_tracks: np.ndarray, pair_dets: np.ndarray,
                       signatures: np.ndarray, all_known: bool) -> None:
        """Weighs the IoU of overlapping pairs by their colours' similarity, and zeroes it where they share
        less than APPEARANCE_GATE (only overlapping pairs can match, so only they are compared); a track
        without a signature yet keeps its IoU."""
        alike = looks.pair_similarity(self._look.take(pair_tracks, axis=0), signatures.take(pair_dets, axis=0))
        weight = (1 - APPEARANCE_WEIGHT) + APPEARANCE_WEIGHT * alike
        weight[alike < APPEARANCE_GATE] = 0.0
        if not all_known:
            weight[~self._has_look[pair_tracks]] = 1.0
        pair_iou *= weight

    def _look_match(self, tracks: np.ndarray, detections: np.ndarray,
                    signatures: np.ndarray | None) -> np.ndarray | None:
        """(T, D) colour similarity of tracks and detections, 1 where a track has no signature yet;
        None without signatures."""
        if signatures is None:
            return None
        similar = looks.similarity(self._look[tracks], signatures[detections])
        similar[~self._has_look[tracks]] = 1.0
        return similar

    def _observe_look(self, track_indices: np.ndarray, signatures: np.ndarray, all_known: bool = False) -> None:
        """Folds these boxes' signatures into their tracks' (a track's first one is taken as it is).
        ``all_known``: every track has a signature already."""
        if track_indices.size == 0:
            return
        if not all_known:
            known = self._has_look[track_indices]
            all_known = np.count_nonzero(known) == known.size
        if all_known:  # the usual case: running tracks have colours
            running = self._look.take(track_indices, axis=0)
            running *= APPEARANCE_MOMENTUM
            running += (1 - APPEARANCE_MOMENTUM) * signatures
            self._look[track_indices] = running
            return
        self._look[track_indices] = np.where(known[:, None], APPEARANCE_MOMENTUM * self._look[track_indices]
                                             + (1 - APPEARANCE_MOMENTUM) * signatures, signatures)
        self._has_look[track_indices] = True

    def _contested(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], matched_dets: np.ndarray,
                   matched_tracks: np.ndarray, keep: np.ndarray, frame_index: int) -> np.ndarray:
        """Which of these matched detections another confirmed track claims (CONTESTED_IOU, CONTESTED_SHARE of
        their own track's IoU; for a never-published track within NEW_ID_HOLD_FRAMES of its first box, any
        claim above NEW_ID_CLEAR_IOU); a never-published track claimed by a lost track of its class and
        colours takes that track's id (removed from ``keep``) and is no longer contested. ``pairs``: the
        overlapping pairs' tracks, detections and weighted IoU, in row-major order (every other pair's IoU
        is 0)."""
        # A few boxes and the pairs touching them: Python lists, not the (tracks, boxes) matrix and its calls.
        column_of = {box: column for column, box in enumerate(matched_dets.tolist())}
        owners = matched_tracks.tolist()
        ids = self._ids.tolist()
        own = [0.0] * len(owners)
        strongest = [0.0] * len(owners)  # of the other confirmed tracks' (at least one of the column is 0)
        claimant = [0] * len(owners)  # the first track of the strongest claim, as argmax
        for track, box, value in zip(*(values.tolist() for values in pairs)):
            column = column_of.get(box)
            if column is None:
                continue
            if track == owners[column]:
                own[column] = value
            elif ids[track] != 0 and value > strongest[column]:
                strongest[column], claimant[column] = value, track
        contested = [claim > CONTESTED_IOU and claim >= CONTESTED_SHARE * mine for claim, mine in zip(strongest, own)]
        unpublished = [ids[track] < 0 for track in owners]
        if any(unpublished):
            first_index = self._first_index.tolist()
            contested = [held or (new and frame_index - first_index[track] < NEW_ID_HOLD_FRAMES
                                  and claim > NEW_ID_CLEAR_IOU)
                         for held, new, track, claim in zip(contested, unpublished, owners, strongest)]
            for column, (held, new) in enumerate(zip(contested, unpublished)):
                if not (held and new):
                    continue
                track, rival = owners[column], claimant[column]
                if (self._ids[rival] > 0 and self._lost[rival] and keep[rival]
                        and self._classes[rival] == self._classes[track] and self._look_alike(rival, track)):
                    self._take_lost_identity(track, rival, keep)
                    contested[column] = False
        return np.array(contested, bool)

    def _swap_on_release(self, det_track: np.ndarray, shown: np.ndarray, contested: np.ndarray,
                         signatures: np.ndarray | None, xywh: np.ndarray, frame_index: int) -> None:
        """A track whose box is shown again after a contest (``shown``, withheld before) and another
        track of its class, released too or still contested, exchange identities where each one's
        colours (learned before the contest) fit the other's box better by RELEASE_SWAP_MARGIN, or, where
        colours cannot tell them apart, where each was heading fits the other's box better."""
        released = shown[self._withheld[det_track[shown]]]
        if released.size == 0:
            return
        candidates = np.concatenate([released, contested]).tolist()
        done: set[int] = set()
        for box in released.tolist():
            track = det_track[box]
            if box in done:
                continue
            best, best_gain = None, RELEASE_SWAP_MARGIN
            for other_box in candidates:
                other = det_track[other_box]
                if other_box == box or other_box in done or self._classes[other] != self._classes[track]:
                    continue
                pair = [track, other]
                if signatures is not None and not self._look_alike(track, other, LOOK_SAME):
                    fit = looks.similarity(self._look[pair], signatures[[box, other_box]])
                else:
                    fit = -RELEASE_MOTION_WEIGHT * self._heading_distances(pair, xywh[[box, other_box]], frame_index)
                gain = fit[0, 1] + fit[1, 0] - fit[0, 0] - fit[1, 1]
                if gain > best_gain:
                    best, best_gain = other_box, gain
            if best is not None:
                pair, swapped = [track, det_track[best]], [det_track[best], track]
                for field in _IDENTITY_FIELDS:  # the Kalman state stays with the boxes
                    values = getattr(self, field)
                    values[pair] = values[swapped]
                done.update((box, best))

    def _heading_distances(self, tracks: list[int], boxes_xywh: np.ndarray, frame_index: int) -> np.ndarray:
        """(2, 2) distance, in the boxes' mean size, of each box's centre from where each track was heading
        when last shown with its id (its centre then, moved on by its velocity then); all 0 where a track was
        never shown."""
        motion = self._free_motion[tracks]
        if np.count_nonzero(motion[:, 8] < 0):
            return np.zeros((2, 2))
        expected = motion[:, :2] + motion[:, 4:6] * (frame_index - motion[:, 8:9])
        size = np.sqrt(boxes_xywh[:, 2] * boxes_xywh[:, 3]).mean()
        offset = expected[:, None, :] - boxes_xywh[None, :, :2]
        return np.sqrt((offset ** 2).sum(axis=2)) / max(size, 1e-6)

    def _look_alike(self, first: int, second: int, gate: float = MERGE_LOOK_GATE) -> bool:
        """Two tracks share ``gate`` of their colours, or one has no signature to compare."""
        if not (self._has_look[first] and self._has_look[second]):
            return True
        return bool(looks.similarity(self._look[first:first + 1], self._look[second:second + 1])[0, 0] >= gate)

    def _recover_lost(self, det_track: np.ndarray, matched: np.ndarray, confirmed: np.ndarray, free: np.ndarray,
                      xywh: np.ndarray, det_size: np.ndarray, classes: np.ndarray,
                      signatures: np.ndarray | None) -> None:
        """Step 3: a sure detection that would start a track (``free``), near where a lost track of its class
        is predicted (centre within LOST_RECOVERY_RADIUS box sizes), continues that track instead."""
        lost = (confirmed & self._lost & ~matched).nonzero()[0]
        if lost.size == 0:
            return
        rows, cols = match(self._recovery_closeness(lost, free, xywh, det_size, classes, signatures), 0.0)
        det_track[free[cols]] = lost[rows]
        matched[lost[rows]] = True

    def _recovery_closeness(self, lost: np.ndarray, free: np.ndarray, xywh: np.ndarray, det_size: np.ndarray,
                            classes: np.ndarray, signatures: np.ndarray | None) -> np.ndarray:
        """(L, F) how near each detection of ``free`` is to each lost track's prediction, 1 - distance /
        radius (0 at or past the radius, or where the class, size or colours rule the pair out)."""
        detected = xywh[free]
        predicted = self._mean[:4, lost].T[:, None, :]  # (L, 1, xywh)
        size = np.maximum(detected[None, :, 2:], np.abs(predicted[..., 2:4]))
        offset = (predicted[..., :2] - detected[None, :, :2]) / np.maximum(size, 1e-6)
        distance = np.sqrt((offset ** 2).sum(axis=2))
        closeness = 1.0 - distance / LOST_RECOVERY_RADIUS
        same = self._look_match(lost, free, signatures)
        if same is not None:
            far = 1.0 - distance / RECOVERY_RADIUS_SAME_LOOK
            closeness = np.where(same >= LOOK_SAME, np.maximum(closeness, far), closeness)
            closeness *= same >= RECOVERY_LOOK_GATE
        closeness *= self._classes[lost, None] == classes[None, free]
        free_size = det_size[None, free]
        full_size = self._full_size[lost, None]
        closeness *= ((free_size <= RECOVERY_SIZE_RATIO * full_size) & (free_size * RECOVERY_SIZE_RATIO >= full_size))
        return closeness

    def _claim_lost_ids(self, dets: np.ndarray, det_track: np.ndarray, keep: np.ndarray, xywh: np.ndarray,
                        det_size: np.ndarray, classes: np.ndarray, signatures: np.ndarray | None) -> None:
        """Tracks about to be published for the first time (boxes ``dets``) that step 3 would have let a
        lost track of their class continue, had it been lost when they started, take that track's id."""
        lost = (self._lost & (self._ids > 0) & keep).nonzero()[0]
        if lost.size == 0:
            return
        rows, cols = match(self._recovery_closeness(lost, dets, xywh, det_size, classes, signatures), 0.0)
        for claimant, track in zip(lost[rows].tolist(), det_track[dets[cols]].tolist()):
            self._take_lost_identity(track, claimant, keep)

    def _take_lost_identity(self, track: int, lost: int, keep: np.ndarray) -> None:
        """A never-published track is the lost track's object: it takes its id and age, and the lost track
        goes (removed from ``keep``)."""
        self._ids[track], self._first_index[track] = self._ids[lost], self._first_index[lost]
        # The object's full size is the lost track's too (it may have come back as a part of itself).
        self._full_size[track] = max(self._full_size[track], self._full_size[lost])
        keep[lost] = False

    def _keep_hidden(self, expired: np.ndarray, matched_corners: np.ndarray, frame_index: int) -> None:
        """Clears ``expired`` for the lost tracks that are behind a box matched in this frame (their
        predicted box more than HIDDEN_COVER covered by it) and lost for at most HIDDEN_BUFFER_FACTOR
        times the buffer. ``matched_corners``: (4, M) x1, y1, x2, y2 rows."""
        candidates = expired.nonzero()[0]
        candidates = candidates[frame_index - self._last_seen[candidates]
                                <= HIDDEN_BUFFER_FACTOR * self._config.lost_track_buffer_frames]
        if candidates.size == 0:
            return
        centre, half = self._mean[:2, candidates], np.abs(self._mean[2:4, candidates]) / 2
        low, high = centre - half, centre + half
        overlap = np.minimum(high[:, :, None], matched_corners[2:, None, :])
        overlap -= np.maximum(low[:, :, None], matched_corners[:2, None, :])
        np.maximum(overlap, 0, out=overlap)
        covered = (overlap[0] * overlap[1]).max(axis=1) / np.maximum(4 * half[0] * half[1], 1e-9)
        expired[candidates[covered > HIDDEN_COVER]] = False

    def _confirm(self, track_indices: np.ndarray) -> int:
        if track_indices.size:
            self._ids[track_indices] = np.arange(self._next_id, self._next_id + track_indices.size)
            self._next_id += track_indices.size
        return int(track_indices.size)

    def _select(self, keep: np.ndarray) -> None:
        # np.compress keeps them C-contiguous (the Kalman steps work in place on views of them).
        self._mean = np.compress(keep, self._mean, axis=1)
        self._covariance = np.compress(keep, self._covariance, axis=2)
        self._ids, self._classes, self._lost = self._ids[keep], self._classes[keep], self._lost[keep]
        self._first_index, self._last_seen = self._first_index[keep], self._last_seen[keep]
        self._votes, self._full_size = self._votes[keep], self._full_size[keep]
        self._look, self._has_look = self._look[keep], self._has_look[keep]
        self._withheld = self._withheld[keep]
        self._matches_to_confirm = self._matches_to_confirm[keep]
        self._free_motion = self._free_motion[keep]

    def _add(self, xywh: np.ndarray, full_size: np.ndarray, classes: np.ndarray, frame_index: int,
             matches_to_confirm: np.ndarray) -> None:
        """New unconfirmed tracks, each confirmed after ``matches_to_confirm`` matches; ``update`` has grown
        the votes for ``classes``."""
        mean, covariance = kalman.initiate(xywh.T)
        count = classes.shape[0]
        self._mean = np.concatenate([self._mean, mean], axis=1)
        self._covariance = np.concatenate([self._covariance, covariance], axis=2)
        self._ids = np.concatenate([self._ids, np.zeros(count, np.int64)])
        self._classes = np.concatenate([self._classes, classes])
        self._lost = np.concatenate([self._lost, np.zeros(count, bool)])
        self._first_index = np.concatenate([self._first_index, np.full(count, frame_index, np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(count, frame_index, np.int64)])
        self._full_size = np.concatenate([self._full_size, full_size])
        votes = np.zeros((count, self._votes.shape[1]))
        votes[np.arange(count), classes] = 1.0
        self._votes = np.concatenate([self._votes, votes])
        self._look = np.concatenate([self._look, np.zeros((count, looks.DIMENSIONS))])
        self._has_look = np.concatenate([self._has_look, np.zeros(count, bool)])
        self._withheld = np.concatenate([self._withheld, np.zeros(count, bool)])
        self._matches_to_confirm = np.concatenate([self._matches_to_confirm, matches_to_confirm])
        self._free_motion = np.concatenate([self._free_motion, np.full((count, 9), -1.0)])  # never shown yet

    def _grow_votes(self, classes: int) -> None:
        """Room in the class votes for class ids below ``classes``."""
        missing = classes - self._votes.shape[1]
        if missing > 0:
            self._votes = np.concatenate([self._votes, np.zeros((self._votes.shape[0], missing))], axis=1)
            self._one_hot = np.eye(classes)


def _duplicates(overlap: np.ndarray, classes: np.ndarray, other_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New boxes against the boxes they may duplicate (``overlap``: rows new, columns others, IoU above
    DUPLICATE_IOU): which start a track (none overlapping one of their class) and which of those duplicate
    a box of another class (a second label: a longer wait for confirmation)."""
    same = overlap & (classes[:, None] == other_classes[None, :])
    return ~same.any(axis=1), overlap.any(axis=1)

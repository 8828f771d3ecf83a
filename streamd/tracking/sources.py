"""The daemon's tracking step: one ByteTracker per source, fed every result in the order published."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

import numpy as np

from streamd.config.schema import TrackingConfig
from streamd.inference.detector import DetectionResult
from streamd.metrics.definitions import StreamdMetrics
from streamd.tracking.appearance import colour_signatures
from streamd.tracking.bytetrack import ByteTracker

_Frozen = TypeVar("_Frozen")


class SourceTrackers:
    """``apply`` is called by the pipeline's publisher, under its lock: one caller at a time, and each
    source's frames in frame order (the pipeline publishes them so), which the tracker relies on."""

    def __init__(self, config: TrackingConfig, source_ids: list[str], metrics: StreamdMetrics | None = None,
                 index_clocked: Collection[str] = ()) -> None:
        self._config = config
        self._trackers = {source_id: ByteTracker(config) for source_id in source_ids}
        self._metrics = metrics
        self._metric_children: dict[str, tuple[Any, Any, Any, Any]] = {}  # by source id (_source_metrics)
        self._active_shown: dict[str, int] = {}  # by source id: the value its tracks_active gauge was set to
        # Sources read flat out (pace "fast"): when a frame was read says how busy the machine was, not
        # how much time passed in the scene, so their trackers count frame indices only (otherwise a
        # scheduling hiccup would be predicted across as frames, and ids would depend on load).
        self._index_clocked = frozenset(index_clocked)

    def retain(self, source_ids: Sequence[str], restarted: Collection[str] = (),
               index_clocked: Collection[str] | None = None) -> None:
        """After a reload (between two pipelines): one tracker per source in ``source_ids``; untouched
        sources keep theirs (tracks and ids go on), added and ``restarted`` ones start empty.
        ``index_clocked``: the sources read flat out now (None: unchanged); one whose clock changed starts
        empty too (its tracks' times are on the other clock)."""
        if index_clocked is not None:
            restarted = set(restarted) | (self._index_clocked ^ frozenset(index_clocked))
            self._index_clocked = frozenset(index_clocked)
        self._trackers = {source_id: self._trackers[source_id]
                          if source_id in self._trackers and source_id not in restarted else ByteTracker(self._config)
                          for source_id in source_ids}

    def forget(self, source_id: str) -> None:
        """Drop a removed source's tracks (a config reload); a source of that id later starts afresh."""
        self._trackers.pop(source_id, None)

    def apply(self, result: DetectionResult) -> DetectionResult:
        """The result with track ids and ages on its detections."""
        frame, detections = result.frame, result.detections
        tracker = self._trackers.get(frame.source_id)
        if tracker is None:  # a source added after start (a config reload): its own tracker from now on
            tracker = self._trackers[frame.source_id] = ByteTracker(self._config)
        image = frame.image
        # Device frames (NVDEC) have no host pixels: those sources track by motion alone.
        signatures = (colour_signatures(image, detections.boxes_xyxy)
                      if self._config.appearance and isinstance(image, np.ndarray) and image.ndim == 3 else None)
        clock = float(frame.index) if frame.source_id in self._index_clocked else frame.capture_time
        update = tracker.update(detections.boxes_xyxy, detections.scores, detections.class_ids, frame.index,
                                clock, signatures)
        if self._metrics is not None:
            children = self._metric_children.get(frame.source_id)
            if children is None:
                children = self._metric_children[frame.source_id] = self._source_metrics(frame.source_id)
            active, started, ended, withheld = children
            if self._active_shown.get(frame.source_id) != update.active:  # a gauge set to its value changes nothing
                active.set(update.active)
                self._active_shown[frame.source_id] = update.active
            if update.started:
                started.inc(update.started)
            if update.ended:
                ended.inc(update.ended)
            if update.withheld:
                withheld.inc(update.withheld)
        tracked = _replaced(detections, track_ids=update.track_ids, track_ages_frames=update.ages_frames)
        return _replaced(result, detections=tracked)

    def _source_metrics(self, source_id: str) -> tuple[Any, Any, Any, Any]:
        """A source's tracking metric children, looked up once (``labels()`` costs about as much as the update)."""
        metrics = self._metrics
        return (metrics.tracks_active.labels(source_id), metrics.tracks_started.labels(source_id),
                metrics.tracks_ended.labels(source_id), metrics.track_ids_withheld.labels(source_id))


def _replaced(instance: _Frozen, **changes: Any) -> _Frozen:
    """``dataclasses.replace`` of a Detections or DetectionResult (frozen dataclasses, every field set by
    ``__init__`` as given, no ``__post_init__``): their fields with ``changes``, without running ``__init__``,
    which sets each field through ``object.__setattr__`` (half the cost; tests/tracking/test_bytetrack.py
    checks the copies against ``dataclasses.replace``'s)."""
    copy = object.__new__(type(instance))
    copy.__dict__.update(instance.__dict__, **changes)
    return copy

"""The daemon's analytics step: one SourceAnalytics per source that has zones or lines, fed every result in
the order published, right after tracking; their metrics; reloads and the preview's overlay."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamd.analytics.source import FrameOutcome, LineSpec, Overlay, SourceAnalytics, ZoneSpec
from streamd.metrics.definitions import StreamdMetrics


class SourceSpec(Protocol):
    """What the analytics read of a source's config (streamd.config.schema.SourceConfig)."""

    id: str
    zones: Sequence[ZoneSpec]
    lines: Sequence[LineSpec]


def has_analytics(source: SourceSpec) -> bool:
    return bool(source.zones or source.lines)


@dataclass(frozen=True)
class _Wanted:
    zones: tuple[ZoneSpec, ...]
    lines: tuple[LineSpec, ...]


class SourceMetrics:
    """One source's analytics series; each labelled child looked up once, with the labels it was made with."""

    def __init__(self, metrics: StreamdMetrics, source_id: str, class_names: Sequence[str]) -> None:
        self._metrics = metrics
        self._source = source_id
        self.class_names = class_names
        self._crossings: dict[tuple[str, str, int], tuple[object, tuple[str, ...]]] = {}
        self._entries: dict[tuple[str, int], tuple[object, tuple[str, ...]]] = {}
        self._occupancy: dict[str, object] = {}

    def _label(self, class_id: int) -> str:
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def crossing(self, line: str, direction: str, class_id: int) -> None:
        found = self._crossings.get((line, direction, class_id))
        if found is None:
            labels = (self._source, line, direction, self._label(class_id))
            found = self._crossings[(line, direction, class_id)] = (self._metrics.line_crossings.labels(*labels),
                                                                     labels)
        found[0].inc()  # type: ignore[attr-defined]

    def entry(self, zone: str, class_id: int) -> None:
        found = self._entries.get((zone, class_id))
        if found is None:
            labels = (self._source, zone, self._label(class_id))
            found = self._entries[(zone, class_id)] = (self._metrics.zone_entries.labels(*labels), labels)
        found[0].inc()  # type: ignore[attr-defined]

    def watch_occupancy(self, analytics: SourceAnalytics) -> None:
        """The occupancy gauges read the source's latest frame when scraped (nothing to do per frame)."""
        for z, zone in enumerate(analytics.zones):
            child = self._occupancy.get(zone.name)
            if child is None:
                child = self._occupancy[zone.name] = self._metrics.zone_occupancy.labels(self._source, zone.name)
            child.set_function(lambda z=z: analytics.occupancy[z])  # type: ignore[attr-defined]

    def renamed_classes(self, class_names: Sequence[str]) -> None:
        """A new model: children made from now on take its class names."""
        self.class_names = class_names
        self._crossings.clear()
        self._entries.clear()

    def drop(self, zones: Collection[str], lines: Collection[str]) -> None:
        """Remove the series of zones and lines that are gone or changed (a changed one counts afresh)."""
        for key in [key for key in self._crossings if key[0] in lines]:
            self._metrics.line_crossings.remove(*self._crossings.pop(key)[1])
        for key in [key for key in self._entries if key[0] in zones]:
            self._metrics.zone_entries.remove(*self._entries.pop(key)[1])
        for zone in [zone for zone in self._occupancy if zone in zones]:
            del self._occupancy[zone]
            self._metrics.zone_occupancy.remove(self._source, zone)


class Analytics:
    """``apply`` is called by the pipeline's publisher, under its lock: one caller at a time, each source's
    frames in frame order. ``configure`` may be called from another thread (a reload): the change is
    taken up at the source's next frame, by the publishing thread."""

    def __init__(self, sources: Sequence[SourceSpec], forget_after_frames: int,
                 metrics: StreamdMetrics | None = None, index_clocked: Collection[str] = (),
                 fps_of: Callable[[str], float] | None = None) -> None:
        """``index_clocked``: sources read flat out, whose source time is frame index / their rate, which
        ``fps_of`` tells once known (0 until then: a frame counts as a second)."""
        self._forget_after_frames = forget_after_frames
        self._metrics = metrics
        self._sources: dict[str, SourceAnalytics] = {}
        self._sinks: dict[str, SourceMetrics] = {}
        self._pending: dict[str, _Wanted] = {}
        self._pending_lock = threading.Lock()
        self._fps: dict[str, float] = {}
        self._fps_of = fps_of
        self._index_clocked = frozenset(index_clocked)
        self._class_names: Sequence[str] = ()
        for source in sources:
            if has_analytics(source):
                self._sources[source.id] = self._build(source.id, _Wanted(tuple(source.zones), tuple(source.lines)))

    def _sink(self, source_id: str) -> SourceMetrics | None:
        if self._metrics is None:
            return None
        sink = self._sinks.get(source_id)
        if sink is None:
            sink = self._sinks[source_id] = SourceMetrics(self._metrics, source_id, self._class_names)
        return sink

    def _build(self, source_id: str, wanted: _Wanted, old: SourceAnalytics | None = None,
               keep_tracks: bool = True) -> SourceAnalytics:
        sink = self._sink(source_id)
        if sink is not None and old is not None:
            sink.drop({zone.name for zone in old.zones if zone not in wanted.zones},
                      {line.name for line in old.lines if line not in wanted.lines})
        analytics = SourceAnalytics(source_id, wanted.zones, wanted.lines, self._forget_after_frames, sink)
        if old is not None:
            analytics.carry_from(old, keep_tracks)
        if sink is not None:
            sink.watch_occupancy(analytics)
        return analytics

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, sources: Sequence[SourceSpec]) -> None:
        """New zones and lines for running sources (a reload that changed nothing else of them)."""
        with self._pending_lock:
            for source in sources:
                self._pending[source.id] = _Wanted(tuple(source.zones), tuple(source.lines))

    def _take_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for source_id, wanted in pending.items():
            self._replace(source_id, wanted, keep_tracks=True)

    def _replace(self, source_id: str, wanted: _Wanted | None, keep_tracks: bool) -> None:
        old = self._sources.get(source_id)
        if wanted is None or not (wanted.zones or wanted.lines):
            if old is not None:
                del self._sources[source_id]
                sink = self._sinks.get(source_id)
                if sink is not None:
                    sink.drop({zone.name for zone in old.zones}, {line.name for line in old.lines})
            return
        if old is not None and keep_tracks and old.zones == wanted.zones and old.lines == wanted.lines:
            return
        self._sources[source_id] = self._build(source_id, wanted, old, keep_tracks)

    def retain(self, sources: Sequence[SourceSpec], restarted: Collection[str] = (),
               index_clocked: Collection[str] | None = None) -> None:
        """Between two pipelines (a reload): analytics for the sources in ``sources``; a ``restarted`` one keeps
        the counts of its unchanged lines but forgets its tracks (its tracker starts over, ids from 1)."""
        if index_clocked is not None:
            self._index_clocked = frozenset(index_clocked)
        for source_id in restarted:
            self._fps.pop(source_id, None)
        self._take_pending()
        wanted_ids = {source.id for source in sources}
        for source_id in [source_id for source_id in self._sources if source_id not in wanted_ids]:
            self._replace(source_id, None, keep_tracks=False)
        for source in sources:
            self._replace(source.id, _Wanted(tuple(source.zones), tuple(source.lines)),
                          keep_tracks=source.id not in restarted)

    # -- per frame -------------------------------------------------------------------------------
    def apply(self, result: object, class_names: Sequence[str]) -> FrameOutcome | None:
        """The analytics of one published result (tracked already); None for a source without zones or lines."""
        if self._pending:
            self._take_pending()
        frame = result.frame  # type: ignore[attr-defined]
        analytics = self._sources.get(frame.source_id)
        if analytics is None:
            return None
        if class_names is not self._class_names:
            self._class_names = class_names
            for sink in self._sinks.values():
                sink.renamed_classes(class_names)
        detections = result.detections  # type: ignore[attr-defined]
        if frame.source_id in self._index_clocked:
            now = frame.index / self._rate(frame.source_id)
        else:
            now = frame.capture_time
        return analytics.apply(detections.boxes_xyxy, detections.class_ids, detections.track_ids, frame.index, now,
                               frame.width, frame.height, class_names)

    def _rate(self, source_id: str) -> float:
        fps = self._fps.get(source_id)
        if fps is None:
            fps = self._fps_of(source_id) if self._fps_of is not None else 0.0
            if fps <= 0:
                return 1.0
            self._fps[source_id] = fps
        return fps

    def next_sequence(self, source_id: str) -> int:
        analytics = self._sources[source_id]
        analytics.source_sequence += 1
        return analytics.source_sequence

    def overlay(self, source_id: str) -> Overlay | None:
        analytics = self._sources.get(source_id)
        return None if analytics is None else analytics.overlay()

    def counts(self, source_id: str) -> dict[str, dict[str, int]]:
        """Each line's in and out counts so far (tests, the preview's JSON)."""
        analytics = self._sources.get(source_id)
        if analytics is None:
            return {}
        return {line.name: {"in": count[0], "out": count[1]} for line, count in zip(analytics.lines, analytics.counts)}


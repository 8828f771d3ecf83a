"""One source's analytics: its zones and lines applied to each published frame, in frame order.

Per frame, for all objects at once: one matrix product places every box's anchor against every zone
edge and line (streamd.analytics.geometry), the tracks' rows are read in one gather (streamd.analytics
.tracks), and membership, dwell and crossings are a few array operations each. Python runs per event
only (an object entering, leaving, crossing), never per object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from streamd.analytics import lines as line_rules
from streamd.analytics import zones as zone_rules
from streamd.analytics.events import Event
from streamd.analytics.geometry import Compiled, LineShape, ZoneShape, compile_shapes, to_pixels
from streamd.analytics.lines import History
from streamd.analytics.occupancy import EPSILON_SECONDS, DwellTimers, OccupancyAlarm
from streamd.analytics.tracks import PENDING, TrackState, TrackTable, set_bits

# Up to this many zones, a detection's zone list and a frame's counts are looked up in tables indexed
# by the zone bits (2**zones entries); more zones build them per detection.
TABLE_ZONES = 8
# Up to this many code bits (zones + 2 per line), the zone-list table is indexed by the whole code, which
# spares masking the line bits off every frame.
TABLE_CODE_BITS = 10


class ZoneSpec(Protocol):
    """What the analytics read of a zone's config (streamd.config.schema.ZoneConfig)."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    units: str
    classes: tuple[str, ...]
    anchor: str
    min_frames: int
    dwell_seconds: float
    max_objects: int
    hold_seconds: float


class LineSpec(Protocol):
    """What the analytics read of a line's config (streamd.config.schema.LineConfig)."""

    name: str
    points: tuple[tuple[float, float], ...]
    units: str
    in_side: str
    classes: tuple[str, ...]
    anchor: str
    margin_px: float


class MetricsSink(Protocol):
    def crossing(self, line: str, direction: str, class_id: int) -> None: ...

    def entry(self, zone: str, class_id: int) -> None: ...


class FrameOutcome(NamedTuple):
    """What one frame's analytics add to the published output."""

    zones_json: list[str] | None  # per detection, its zones as a JSON list; None: the source has no zones
    events: list[Event]


@dataclass(frozen=True)
class ZoneView:
    name: str
    polygon: np.ndarray  # (P, 2) frame pixels
    count: int
    alarm: bool


@dataclass(frozen=True)
class LineView:
    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    inside_is_left: bool
    count_in: int
    count_out: int


@dataclass(frozen=True)
class Overlay:
    """What the preview draws: zones with their occupancy, lines with their counts, in frame pixels."""

    width: int
    height: int
    zones: tuple[ZoneView, ...]
    lines: tuple[LineView, ...]


# Stale tracks are looked for every this many frames.
FORGET_EVERY_FRAMES = 8


class SourceAnalytics:
    """``apply`` is called with each published frame of the source, in frame order, one call at a time."""

    def __init__(self, source_id: str, zones: Sequence[ZoneSpec], lines: Sequence[LineSpec],
                 forget_after_frames: int, metrics: MetricsSink | None = None) -> None:
        self.source_id = source_id
        self.zones = tuple(zones)
        self.lines = tuple(lines)
        self.forget_after_frames = max(1, forget_after_frames)
        self.metrics = metrics
        z = len(self.zones)
        self.table = TrackTable()
        self.history = History(self.forget_after_frames + 1)
        self.min_frames = [zone.min_frames for zone in self.zones]
        self.dwell = DwellTimers()
        self.counts = [[0, 0] for _ in self.lines]  # per line: in, out
        self._codes = np.zeros(0, np.int64)  # the latest frame's codes (zones, line sides) of each detection
        self._occupancy: tuple[np.ndarray, list[int]] = (self._codes, [0] * z)
        self.alarms = [OccupancyAlarm(zone.max_objects, zone.hold_seconds) if zone.max_objects > 0 else None
                       for zone in self.zones]
        self._alarm_zones = [(z, alarm) for z, alarm in enumerate(self.alarms) if alarm is not None]
        self.source_sequence = 0  # events messages published
        self._size: tuple[int, int] | None = None
        self._compiled: Compiled | None = None
        self._shapes: tuple[tuple[ZoneShape, ...], tuple[LineShape, ...]] = ((), ())
        self._class_names: Sequence[str] | None = None
        self._zone_classes: np.ndarray | None = None  # class id (clipped) -> bits of the zones that count it
        self._line_classes: list[list[bool]] | None = None  # class id (clipped) -> lines that count it
        # The source time of recent frames by index, for the exits of tracks that ended.
        self._times = np.full(self.forget_after_frames + 2 * FORGET_EVERY_FRAMES, math.nan)
        names = [json.dumps(zone.name) for zone in self.zones]
        self._names_json = names
        self._zone_bits = np.left_shift(1, np.arange(z, dtype=np.int64))
        code_bits = z + 2 * len(self.lines)
        # A whole-code table repeats the zone lists for every combination of line bits (zone bits lowest).
        table_bits = code_bits if code_bits <= TABLE_CODE_BITS else z
        if z <= TABLE_ZONES:
            self._json_table = np.array(["[" + ",".join(names[i] for i in range(z) if value >> i & 1) + "]"
                                         for value in range(1 << z)] * (1 << (table_bits - z)), dtype=object)
            self._bit_matrix = ((np.arange(1 << z)[:, None] >> np.arange(z)) & 1).astype(np.int64)
        else:
            self._json_table = None
            self._bit_matrix = None
        self._json_by_code = self._json_table is not None and table_bits == code_bits
        self._json_cache: dict[int, str] = {}

    # -- configuration --------------------------------------------------------------------------
    def _compile(self, width: int, height: int) -> None:
        zones = tuple(ZoneShape(to_pixels(zone.polygon, zone.units, width, height), zone.anchor)
                      for zone in self.zones)
        lines = []
        for line in self.lines:
            points = to_pixels(line.points, line.units, width, height)
            lines.append(LineShape(points[0], points[1], line.anchor, line.in_side == "left", line.margin_px))
        self._shapes = (zones, tuple(lines))
        self._compiled = compile_shapes(zones, lines)
        self._size = (width, height)
        self.history.clear()  # rows of another size's layout

    def _learn_classes(self, class_names: Sequence[str]) -> None:
        """Class filters by id, for this model's names; the last entry stands for any id past them."""
        count = len(class_names) + 1
        index = {name: i for i, name in enumerate(class_names)}
        if any(zone.classes for zone in self.zones):
            table = np.zeros(count, np.int64)
            for z, zone in enumerate(self.zones):
                admitted = [index[name] for name in zone.classes if name in index] if zone.classes else range(count)
                table[list(admitted)] |= 1 << z
            table |= ~np.int64((1 << len(self.zones)) - 1)  # the line bits pass
            self._zone_classes = table
        else:
            self._zone_classes = None
        if any(line.classes for line in self.lines):
            self._line_classes = [[not line.classes or (c < len(class_names) and class_names[c] in line.classes)
                                   for line in self.lines] for c in range(count)]
        else:
            self._line_classes = None
        self._class_names = class_names

    # -- one frame -------------------------------------------------------------------------------
    def apply(self, boxes_xyxy: np.ndarray, class_ids: np.ndarray, track_ids: np.ndarray | None,
              frame_index: int, now: float, width: int, height: int, class_names: Sequence[str]) -> FrameOutcome:
        """``now``: the frame's source time in seconds."""
        if self._size != (width, height):
            self._compile(width, height)
        if class_names is not self._class_names:
            self._learn_classes(class_names)
        compiled: Compiled = self._compiled  # type: ignore[assignment]
        events: list[Event] = []
        codes, rows = compiled.evaluate(boxes_xyxy)
        if self._zone_classes is not None:
            codes &= self._zone_classes.take(class_ids, mode="clip")
        zones_json = None
        if self.zones:
            self._codes = codes  # the occupancy, counted when asked (the gauge at a scrape, the preview)
            if self._json_by_code:
                zones_json = self._json_table[codes].tolist()  # type: ignore[index]
            else:
                zones_json = self._zones_json(codes & compiled.zone_mask if self.lines else codes)
            if self._alarm_zones:
                self._alarm(codes, now, events)
        if track_ids is not None and codes.shape[0]:
            table = self.table
            # A track to look at: its code changed (a new track's row holds no code yet). A box without an
            # id reads row 0, which matches no code: it is among the changed ones and left out here.
            positions = track_ids - table.base
            changed = (table.codes.take(positions, mode="clip") != codes).nonzero()[0]
            if changed.shape[0]:
                which = [box for box in changed.tolist() if track_ids.item(box) > 0]
                if which:
                    positions = self._changes(positions, which, codes, rows, class_ids, track_ids, now, events)
            table.last_index.put(positions, frame_index, mode="clip")
            self.history.add(track_ids, rows)
        if now + EPSILON_SECONDS >= self.dwell.next_due:
            self._dwell(now, events)
        self._times[frame_index % self._times.shape[0]] = now
        if frame_index % FORGET_EVERY_FRAMES == 0 and self.table.states:
            self._forget(frame_index, events)
        return FrameOutcome(zones_json, events)

    def _zones_json(self, bits: np.ndarray) -> list[str]:
        if self._json_table is not None:
            return self._json_table[bits].tolist()
        cache, result = self._json_cache, []
        for value in bits.tolist():
            text = cache.get(value)
            if text is None:
                if len(cache) > 4096:
                    cache.clear()
                text = cache[value] = "[" + ",".join(name for i, name in enumerate(self._names_json)
                                                     if value >> i & 1) + "]"
            result.append(text)
        return result

    @property
    def occupancy(self) -> list[int]:
        """Detections in each zone (of the classes it counts) in the latest frame, tracked or not."""
        codes = self._codes
        cached = self._occupancy
        if cached[0] is codes:
            return cached[1]
        bits = codes & ((1 << len(self.zones)) - 1)
        if self._bit_matrix is not None:
            counts = (np.bincount(bits, minlength=self._bit_matrix.shape[0]) @ self._bit_matrix).tolist()
        else:
            counts = np.count_nonzero((bits[:, None] & self._zone_bits) != 0, axis=0).tolist()
        self._occupancy = (codes, counts)
        return counts

    def _alarm(self, codes: np.ndarray, now: float, events: list[Event]) -> None:
        """The zones with an occupancy alarm, each counted on its own (usually fewer than all the zones)."""
        for z, alarm in self._alarm_zones:
            # nonzero's length: np.count_nonzero's Python wrapper costs more than the count at this size
            count = len(np.bitwise_and(codes, np.int64(1 << z)).nonzero()[0])
            change = alarm.update(count, now)
            if change == "start":
                events.append(Event("occupancy_start", self.zones[z].name, count=count,
                                    max_objects=alarm.max_objects))
            elif change == "end":
                events.append(Event("occupancy_end", self.zones[z].name, count=count,
                                    max_objects=alarm.max_objects, seconds=now - alarm.active_since))

    def _changes(self, positions: np.ndarray, which: list[int], codes: np.ndarray, rows: np.ndarray,
                 class_ids: np.ndarray, track_ids: np.ndarray, now: float, events: list[Event]) -> np.ndarray:
        """The tracks whose code changed, or that are part way through a zone's min_frames (or new): per track,
        in Python (a few a frame). Returns the boxes' rows (the table may have grown for a new id)."""
        table = self.table
        states = table.states
        zone_count = len(self.zones)
        zone_mask = (1 << zone_count) - 1
        line_count = len(self.lines)
        # A few boxes: their values read one by one (``item``: cheaper than the frame's arrays as lists).
        places = [positions.item(box) for box in which]
        if min(places) <= 0 or max(places) >= table.codes.shape[0] - 1:  # an id past the table's rows
            positions = table.fit(track_ids)
            places = [positions.item(box) for box in which]
        stored = table.codes
        code_of, id_of, class_of = codes.item, track_ids.item, class_ids.item
        for box, place in zip(which, places):
            code, track_id, class_id = code_of(box), id_of(box), class_of(box)
            state = states.get(track_id)
            if state is None:
                state = states[track_id] = TrackState(line_count)
            previous = state.code if state.code >= 0 else 0
            if zone_count and ((code & zone_mask) != state.confirmed or state.runs):
                for z, seconds in zone_rules.update(state, code & zone_mask, now, self.min_frames):
                    self._zone_event(state, z, seconds, track_id, class_id, events)
            if line_count and (code ^ previous) >> zone_count:
                for k in line_rules.update(state, code, zone_count):
                    self._crossed(k, box, rows, class_id, track_id, events)
            state.code = code
            stored[place] = code | PENDING if state.runs else code
        return positions

    def _zone_event(self, state: TrackState, z: int, seconds: float, track_id: int, class_id: int,
                    events: list[Event]) -> None:
        zone = self.zones[z]
        if seconds >= 0:
            events.append(Event("zone_exit", zone.name, track_id, state.class_id, seconds=seconds))
            return
        state.class_id = class_id
        events.append(Event("zone_enter", zone.name, track_id, class_id))
        if self.metrics is not None:
            self.metrics.entry(zone.name, class_id)
        if zone.dwell_seconds > 0:
            since = state.since[z]
            self.dwell.start(since + zone.dwell_seconds, track_id, z, since)

    def _crossed(self, k: int, box: int, rows: np.ndarray, class_id: int, track_id: int,
                 events: list[Event]) -> None:
        if self._line_classes is not None and not self._line_classes[min(class_id, len(self._line_classes) - 1)][k]:
            return
        measure = self._compiled.distance  # type: ignore[union-attr]
        distance, along = measure(rows, box, k)
        where = self.history.crossing_point(track_id, distance, along, lambda earlier, b: measure(earlier, b, k))
        if not 0.0 <= where <= 1.0:
            return  # round the end of the line
        inward = distance > 0
        direction = "in" if inward else "out"
        self.counts[k][0 if inward else 1] += 1
        line = self.lines[k]
        events.append(Event("line_cross", line.name, track_id, class_id, direction=direction))
        if self.metrics is not None:
            self.metrics.crossing(line.name, direction, class_id)

    def _dwell(self, now: float, events: list[Event]) -> None:
        """Dwell events due by ``now``, for every track in a zone (seen this frame or briefly not)."""
        states = self.table.states
        for track_id, z, since in self.dwell.pop_due(now):
            state = states.get(track_id)
            if state is None or state.since.get(z) != since or state.done >> z & 1:
                continue  # it left (and maybe came back) since
            state.done |= 1 << z
            events.append(Event("zone_dwell", self.zones[z].name, track_id, state.class_id, seconds=now - since))

    def _forget(self, frame_index: int, events: list[Event]) -> None:
        """Tracks unseen for ``forget_after_frames`` have ended (the tracker never brings them back): they
        leave their zones, as of the last frame they were seen in."""
        table = self.table
        stale = table.stale(frame_index - self.forget_after_frames)
        if not stale:
            return
        times = self._times
        for track_id in stale:
            state = table.states[track_id]
            if not state.confirmed:
                continue
            last = int(table.last_index[track_id - table.base])
            seen_at = float(times[last % times.shape[0]]) if frame_index - last < times.shape[0] else math.nan
            for z in set_bits(state.confirmed):
                events.append(Event("zone_exit", self.zones[z].name, track_id, state.class_id,
                                    seconds=seen_at - state.since.get(z, seen_at)))
        table.remove(stale)

    # -- reload and preview ----------------------------------------------------------------------
    def carry_from(self, old: SourceAnalytics, keep_tracks: bool) -> None:
        """Take over what ``old`` (the same source before a reload) knew of the zones and lines that did not
        change: line counts, occupancy alarms and, with ``keep_tracks``, each track's state."""
        old_zones = {zone: z for z, zone in enumerate(old.zones)}
        old_lines = {line: k for k, line in enumerate(old.lines)}
        zone_map = {old_zones[zone]: z for z, zone in enumerate(self.zones) if zone in old_zones}
        line_map = {old_lines[line]: k for k, line in enumerate(self.lines) if line in old_lines}
        for i, z in zone_map.items():
            self.alarms[z] = old.alarms[i]
        self._alarm_zones = [(z, alarm) for z, alarm in enumerate(self.alarms) if alarm is not None]
        for i, k in line_map.items():
            self.counts[k] = old.counts[i]
        self.source_sequence = old.source_sequence
        if not keep_tracks:
            return
        table = self.table
        # Every track is looked at again at its next frame, against the zones and lines as they are now.
        table.restore(old.table)
        for track_id, was in old.table.states.items():
            state = table.states[track_id] = TrackState(len(self.lines))
            state.class_id = was.class_id
            for i, z in zone_map.items():
                state.confirmed |= (was.confirmed >> i & 1) << z
                state.done |= (was.done >> i & 1) << z
                if i in was.since:
                    state.since[z] = was.since[i]
                if i in was.runs:
                    state.runs[z] = list(was.runs[i])
            for i, k in line_map.items():
                state.sides[k] = was.sides[i]
        for due, track_id, i, since in old.dwell.entries():
            if i in zone_map:
                self.dwell.start(due, track_id, zone_map[i], since)
        if self._times.shape == old._times.shape:
            self._times = old._times.copy()

    def overlay(self) -> Overlay | None:
        if self._size is None:
            return None
        zone_shapes, line_shapes = self._shapes
        occupancy = list(self.occupancy)
        zones = tuple(ZoneView(zone.name, shape.polygon, occupancy[z] if z < len(occupancy) else 0,
                               bool(self.alarms[z] is not None and self.alarms[z].active))
                      for z, (zone, shape) in enumerate(zip(self.zones, zone_shapes)))
        lines = tuple(LineView(line.name, (float(shape.start[0]), float(shape.start[1])),
                               (float(shape.end[0]), float(shape.end[1])), shape.inside_is_left, *self.counts[k])
                      for k, (line, shape) in enumerate(zip(self.lines, line_shapes)))
        return Overlay(self._size[0], self._size[1], zones, lines)

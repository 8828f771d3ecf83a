"""Tracks fed to the analytics directly, without a model: boxes placed by their bottom-centre anchor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamd.analytics.events import Event
from streamd.analytics.source import SourceAnalytics
from streamd.config.schema import LineConfig, ZoneConfig

WIDTH, HEIGHT = 640, 480
FPS = 10.0
CLASSES = ("person", "car", "dog")
BOX_WIDTH, BOX_HEIGHT = 20.0, 40.0

# (track id, anchor x, anchor y), or (track id, x, y, class id); track id -1: a box without an id.
Object = tuple


def box(x: float, y: float) -> list[float]:
    """A box whose bottom centre is (x, y), clipped to the frame as a detector's boxes are."""
    return [max(0.0, x - BOX_WIDTH / 2), max(0.0, y - BOX_HEIGHT), min(WIDTH, x + BOX_WIDTH / 2), min(HEIGHT, y)]


@dataclass
class Feed:
    """One source's analytics, fed frame after frame; what came out."""

    zones: Sequence[ZoneConfig] = ()
    lines: Sequence[LineConfig] = ()
    forget_after_frames: int = 31
    fps: float = FPS
    analytics: SourceAnalytics = field(init=False)
    events: list[tuple[int, Event]] = field(default_factory=list)
    zones_json: list[list[str] | None] = field(default_factory=list)
    frame: int = 0

    def __post_init__(self) -> None:
        self.analytics = SourceAnalytics("cam", self.zones, self.lines, self.forget_after_frames)

    def step(self, objects: Iterable[Object] = ()) -> list[Event]:
        objects = list(objects)
        boxes = np.array([box(o[1], o[2]) for o in objects], np.float32).reshape(-1, 4)
        class_ids = np.array([o[3] if len(o) > 3 else 0 for o in objects], np.int32)
        track_ids = np.array([o[0] for o in objects], np.int64)
        outcome = self.analytics.apply(boxes, class_ids, track_ids, self.frame, self.frame / self.fps, WIDTH,
                                       HEIGHT, CLASSES)
        self.events += [(self.frame, event) for event in outcome.events]
        self.zones_json.append(outcome.zones_json)
        self.frame += 1
        return outcome.events

    def run(self, frames: Iterable[Iterable[Object]]) -> Feed:
        for objects in frames:
            self.step(objects)
        return self

    def idle(self, frames: int) -> Feed:
        return self.run([[]] * frames)

    def of(self, kind: str) -> list[tuple[int, Event]]:
        return [(frame, event) for frame, event in self.events if event.type == kind]

    def crossings(self, line: str | None = None) -> dict[str, int]:
        found = {"in": 0, "out": 0}
        for _, event in self.of("line_cross"):
            if line is None or event.name == line:
                found[event.direction] += 1  # type: ignore[index]
        return found


def path(start: tuple[float, float], end: tuple[float, float], frames: int) -> list[tuple[float, float]]:
    """``frames`` points from ``start`` to ``end``, both included."""
    return [(start[0] + (end[0] - start[0]) * i / (frames - 1), start[1] + (end[1] - start[1]) * i / (frames - 1))
            for i in range(frames)]


def walk(track_id: int, points: Sequence[tuple[float, float]], class_id: int = 0) -> list[list[Object]]:
    return [[(track_id, x, y, class_id)] for x, y in points]


def together(*walks: list[list[Object]]) -> list[list[Object]]:
    """Frame by frame, every walk's objects (a shorter walk is over once it ends)."""
    length = max(len(w) for w in walks)
    return [[o for w in walks if i < len(w) for o in w[i]] for i in range(length)]


def line(name: str = "door", start: tuple[float, float] = (100.0, 240.0), end: tuple[float, float] = (540.0, 240.0),
         **settings: object) -> LineConfig:
    return LineConfig(name, (start, end), **settings)  # type: ignore[arg-type]


def zone(name: str = "area", polygon: Sequence[tuple[float, float]] = ((200, 150), (440, 150), (440, 350), (200, 350)),
         **settings: object) -> ZoneConfig:
    return ZoneConfig(name, tuple((float(x), float(y)) for x, y in polygon), **settings)  # type: ignore[arg-type]

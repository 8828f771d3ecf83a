"""Zone occupancy, occupancy alarms and line crossings per source, kept from the events messages a sink sends.

A sink that carries ``counts`` updates these from each ``streamd.events/1`` message as it renders it (once per
message, so a message sent again after a lost connection does not count twice) and sends the source's
``streamd.counts/1`` document when one of them changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamd.config.schema import SourceConfig

SCHEMA = "streamd.counts/1"


@dataclass
class SourceCounts:
    occupants: dict[str, set[Any]] = field(default_factory=dict)  # zone -> track ids entered and not yet left
    alarms: dict[str, bool] = field(default_factory=dict)  # zone -> its occupancy alarm is on
    crossings: dict[str, dict[str, int]] = field(default_factory=dict)  # line -> {"in": n, "out": n}


class Counts:
    def __init__(self, sources: Sequence[SourceConfig] = ()) -> None:
        self._sources: dict[str, SourceCounts] = {}
        for source in sources:  # the configured zones and lines appear from the first document, at zero
            counts = self._of(source.id)
            for zone in source.zones:
                counts.occupants[zone.name] = set()
                if zone.max_objects > 0:
                    counts.alarms[zone.name] = False
            for line in source.lines:
                counts.crossings[line.name] = {"in": 0, "out": 0}

    def _of(self, source_id: str) -> SourceCounts:
        counts = self._sources.get(source_id)
        if counts is None:
            counts = self._sources[source_id] = SourceCounts()
        return counts

    def update(self, source_id: str, message: dict[str, Any]) -> bool:
        """Apply an events message's events; True when a count or an alarm changed."""
        counts = self._of(source_id)
        changed = False
        for event in message.get("events", ()):
            kind = event.get("type")
            if kind == "line_cross":
                line = counts.crossings.setdefault(event["line"], {"in": 0, "out": 0})
                line[event["direction"]] = line.get(event["direction"], 0) + 1
                changed = True
            elif kind in ("zone_enter", "zone_exit"):
                occupants = counts.occupants.setdefault(event["zone"], set())
                before = len(occupants)
                if kind == "zone_enter":
                    occupants.add(event.get("track_id"))
                else:
                    occupants.discard(event.get("track_id"))
                changed = changed or len(occupants) != before
            elif kind in ("occupancy_start", "occupancy_end"):
                on = kind == "occupancy_start"
                changed = changed or counts.alarms.get(event["zone"]) != on
                counts.alarms[event["zone"]] = on
        return changed

    def document(self, source_id: str, node: str, message: dict[str, Any]) -> dict[str, Any]:
        """The source's counts after ``message`` (the events message that changed them)."""
        counts = self._of(source_id)
        zones: dict[str, dict[str, Any]] = {name: {"occupancy": len(occupants)}
                                            for name, occupants in counts.occupants.items()}
        for name, on in counts.alarms.items():
            zones.setdefault(name, {"occupancy": 0})["alarm"] = on
        return {"schema": SCHEMA, "node": node, "source": source_id,
                "source_sequence": message.get("source_sequence"), "publish_time": message.get("publish_time"),
                "zones": zones, "lines": {name: dict(line) for name, line in counts.crossings.items()}}

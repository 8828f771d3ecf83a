"""[[sources.zones]] and [[sources.lines]]: every problem is a config error naming its key (exit 2)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamd.config.load import parse_config
from streamd.config.schema import LineConfig, ZoneConfig
from streamd.errors import ConfigError
from tests.support import REPO

ZONE = {"name": "queue", "polygon": [[10, 10], [200, 10], [200, 150], [10, 150]]}
LINE = {"name": "door", "points": [[0, 240], [640, 240]]}


def document(zones: list | None = None, lines: list | None = None, **sections: Any) -> dict:
    source: dict[str, Any] = {"id": "cam", "kind": "synthetic"}
    if zones is not None:
        source["zones"] = zones
    if lines is not None:
        source["lines"] = lines
    return {"sources": [source], "model": {"path": "builtin:synthetic-shapes"}, **sections}


def with_zone(**changes: Any) -> dict:
    zone = {**copy.deepcopy(ZONE), **changes}
    return document(zones=[zone])


def with_line(**changes: Any) -> dict:
    line = {**copy.deepcopy(LINE), **changes}
    return document(lines=[line])


def test_zones_and_lines_are_read() -> None:
    config = parse_config(document(
        zones=[{**ZONE, "classes": ["circle"], "anchor": "centre", "min_frames": 1, "dwell_seconds": 30,
                "max_objects": 4, "hold_seconds": 2.5},
               {"name": "half", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "units": "fractions"}],
        lines=[{**LINE, "in_side": "right", "classes": ["square", "cross"], "margin_px": 8}]))
    zone, half = config.sources[0].zones
    assert zone == ZoneConfig("queue", ((10.0, 10.0), (200.0, 10.0), (200.0, 150.0), (10.0, 150.0)), "pixels",
                              ("circle",), "centre", 1, 30.0, 4, 2.5)
    assert half.units == "fractions" and half.polygon[1] == (0.5, 0.0)
    assert config.sources[0].lines == (LineConfig("door", ((0.0, 240.0), (640.0, 240.0)), "pixels", "right",
                                                   ("square", "cross"), "bottom_centre", 8.0),)


def test_parsing_leaves_the_document_as_it_was() -> None:
    original = document(zones=[ZONE], lines=[LINE])
    kept = copy.deepcopy(original)
    parse_config(original)
    assert original == kept


ERRORS = [
    (with_zone(polygon=[[0, 0], [100, 100], [100, 0], [0, 100]]), r"sources\[0\]\.zones\[0\]\.polygon",
     "crosses itself: edge 1 .* and edge 3"),
    (with_zone(polygon=[[0, 0], [100, 0], [50, 0]]), r"zones\[0\]\.polygon", "fold back"),
    (with_zone(polygon=[[0, 0], [100, 0], [100, 0], [0, 50]]), r"zones\[0\]\.polygon", "the same point"),
    (with_zone(polygon=[[0, 0], [100, 0]]), r"zones\[0\]\.polygon", "at least 3 corners"),
    (with_zone(polygon=[[0, 0], [1.5, 0], [1, 1]], units="fractions"), r"zones\[0\]\.polygon",
     r"point 2 \[1.5, 0\] is outside 0-1"),
    (with_zone(polygon=[[0, 0], [0.5, -0.1], [1, 1]], units="fractions"), r"zones\[0\]\.polygon", "outside 0-1"),
    (with_zone(polygon=[[0, 0], [10, "a"], [1, 1]]), r"zones\[0\]\.polygon", r"\[x, y\] number pairs"),
    (with_zone(polygon=[[0, 0], [10, 0, 3], [1, 1]]), r"zones\[0\]\.polygon", r"\[x, y\] number pairs"),
    (with_zone(polygon=None), r"zones\[0\]\.polygon", "expected a list"),
    (document(zones=[{"name": "a"}]), r"zones\[0\]\.polygon", "required key is missing"),
    (document(zones=[{"polygon": ZONE["polygon"]}]), r"zones\[0\]\.name", "required key is missing"),
    (with_zone(name="a b"), r"zones\[0\]\.name", "letters, digits"),
    (with_zone(units="percent"), r"zones\[0\]\.units", "is not one of"),
    (with_zone(anchor="feet"), r"zones\[0\]\.anchor", "is not one of"),
    (with_zone(classes=["circel"]), r"zones\[0\]\.classes", "did you mean 'circle'"),
    (with_zone(classes="circle"), r"zones\[0\]\.classes", "list of class names"),
    (with_zone(min_frames=0), r"zones\[0\]\.min_frames", "at least 1"),
    (with_zone(dwell_seconds=-1), r"zones\[0\]\.dwell_seconds", "negative"),
    (with_zone(max_objects=-2), r"zones\[0\]\.max_objects", "negative"),
    (with_zone(hold_seconds=-0.5), r"zones\[0\]\.hold_seconds", "negative"),
    (with_zone(colour="red"), r"zones\[0\]\.colour", "unknown key"),
    (document(zones={"name": "x"}), r"sources\[0\]\.zones", r"expected \[\[sources.zones\]\] tables"),
    (with_line(points=[[10, 10], [10, 10]]), r"sources\[0\]\.lines\[0\]\.points", "zero length"),
    (with_line(points=[[10, 10], [20, 10], [30, 10]]), r"lines\[0\]\.points", "exactly 2 points"),
    (with_line(points=[[0, 0], [1.2, 1]], units="fractions"), r"lines\[0\]\.points", "outside 0-1"),
    (with_line(in_side="up"), r"lines\[0\]\.in_side", "is not one of"),
    (with_line(margin_px=-1), r"lines\[0\]\.margin_px", "negative"),
    (with_line(classes=["person"]), r"lines\[0\]\.classes", "not one of the model's classes"),
    (document(lines=[LINE], tracking={"enabled": False}), r"sources\[0\]\.lines", r"need \[tracking\]"),
    (document(zones=[ZONE], lines=[{**LINE, "name": "queue"}]), r"sources\[0\]\.lines\[0\]\.name",
     r"taken by sources\[0\]\.zones\[0\]"),
    (document(zones=[ZONE, ZONE]), r"zones\[1\]\.name", "taken by"),
    (document(zones=[{**ZONE, "name": f"z{i}"} for i in range(31)]), r"sources\[0\]\.zones", "at most 30"),
    (document(lines=[{**LINE, "name": f"l{i}"} for i in range(17)]), r"sources\[0\]\.lines", "at most 16"),
]


@pytest.mark.parametrize(("config", "key", "reason"), ERRORS)
def test_config_errors_name_the_key(config: dict, key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"{key}.*{reason}"):
        parse_config(config)


def test_zones_without_tracking_are_allowed() -> None:
    """A zone says which detections are in it and how many, without ids; only its events need tracking."""
    config = parse_config(document(zones=[ZONE], tracking={"enabled": False}))
    assert config.sources[0].zones[0].name == "queue"


def test_a_config_error_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\nid = "cam"\nkind = "synthetic"\n[[sources.lines]]\nname = "door"\n'
                    'points = [[5, 5], [5, 5]]\n[model]\npath = "builtin:synthetic-shapes"\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["streamd: invalid configuration: config key 'sources[0].lines[0].points': "
                                          "the line has zero length (both points are the same)"]

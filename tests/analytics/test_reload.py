"""A reload that changes only a source's zones or lines is an analytics update, not a source restart."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.config import parse_config
from streamd.config.schema import Config, SourceConfig
from streamd.daemon.reload import Reloader, diff_configs

LINE = {"name": "door", "points": [[0, 240], [640, 240]]}
ZONE = {"name": "queue", "polygon": [[10, 10], [200, 10], [200, 150]]}


def config(*sources: dict) -> Config:
    return parse_config({"sources": list(sources), "model": {"path": "builtin:synthetic-shapes"}}, path="c.toml")


def synthetic(source_id: str, seed: int = 0, **tables: list) -> dict:
    return {"id": source_id, "kind": "synthetic", "seed": seed, **tables}


def test_zones_and_lines_alone_are_an_analytics_update() -> None:
    old = config(synthetic("a", lines=[LINE]), synthetic("b"), synthetic("c", zones=[ZONE]))
    new = config(synthetic("a", lines=[{**LINE, "in_side": "right"}]), synthetic("b", zones=[ZONE]),
                 synthetic("c", seed=4, zones=[]))
    diff = diff_configs(old, new)
    assert [s.id for s in diff.analytics] == ["a", "b"]
    assert [s.id for s in diff.changed] == ["c"]  # its seed changed: restarted, zones and all
    assert diff.unchanged == ()
    assert not diff.empty and diff.swaps_pipeline
    assert diff.summary() == "restarted c; zones or lines updated a, b; 0 source(s) untouched"


def test_an_analytics_update_alone_swaps_no_pipeline() -> None:
    old = config(synthetic("a"))
    new = config(synthetic("a", zones=[ZONE]))
    diff = diff_configs(old, new)
    assert diff.analytics and not diff.swaps_pipeline and not diff.empty


@dataclass
class _Service:
    """What the reloader touches, recorded."""

    config: Config
    sources: list = field(default_factory=list)
    detectors: list = field(default_factory=list)
    pipeline: object = None
    updated: list[SourceConfig] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)

    def update_analytics(self, sources: list[SourceConfig]) -> None:
        self.updated += sources

    def count_reload(self, result: str) -> None:
        self.counted.append(result)

    def build_pipeline(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("no pipeline swap for zones and lines alone")


def test_the_reloader_hands_zones_and_lines_to_the_running_service() -> None:
    new = config(synthetic("a", lines=[LINE]))
    service = _Service(config(synthetic("a")))
    assert Reloader(service, lambda _path: new).reload()  # type: ignore[arg-type]
    assert [s.lines for s in service.updated] == [new.sources[0].lines]
    assert service.config.sources == new.sources and service.counted == ["applied"]

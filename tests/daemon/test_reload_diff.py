"""What a reload changes: the difference between the running config and the new one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from streamd.config import parse_config
from streamd.daemon.reload import diff_configs


def config(tiny_model: Path, sources: list[dict], **sections: dict):
    return parse_config({"sources": sources, "model": {"path": str(tiny_model)}, **sections})


def synthetic(source_id: str, seed: int = 0) -> dict:
    return {"id": source_id, "kind": "synthetic", "seed": seed}


def test_sources_added_removed_changed_untouched(tiny_model: Path) -> None:
    old = config(tiny_model, [synthetic("steady"), synthetic("leaving"), synthetic("changing")])
    new = config(tiny_model, [synthetic("steady"), synthetic("changing", seed=1), synthetic("joining")])
    diff = diff_configs(old, new)
    assert [s.id for s in diff.added] == ["joining"]
    assert diff.removed == ("leaving",)
    assert [s.id for s in diff.changed] == ["changing"] and diff.changed[0].seed == 1
    assert diff.unchanged == ("steady",)
    assert not diff.model_changed and not diff.restart_only and not diff.empty
    assert diff.summary() == "added joining; removed leaving; restarted changing; 1 source(s) untouched"


def test_model_change_and_sections_that_need_a_restart(tiny_model: Path) -> None:
    old = config(tiny_model, [synthetic("steady")])
    new = config(tiny_model, [synthetic("steady")], publish={"endpoint": "tcp://127.0.0.1:6000"},
                 daemon={"log_level": "debug"})
    new = dataclasses.replace(new, model=dataclasses.replace(new.model, score_threshold=0.5))
    diff = diff_configs(old, new)
    assert diff.model_changed and diff.unchanged == ("steady",)
    assert diff.restart_only == ("publish.endpoint",)  # log_level is applied by the reload itself
    assert diff.summary() == "model swapped; 1 source(s) untouched"


def test_the_same_config_changes_nothing(tiny_model: Path) -> None:
    assert diff_configs(config(tiny_model, [synthetic("a")]), config(tiny_model, [synthetic("a")])).empty

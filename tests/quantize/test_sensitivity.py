"""The search logic against a scripted fidelity, no models involved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamd.quantize.sensitivity import LayerSensitivity, SensitivitySearch, int8_mac_share

MACS = {"stem": 500, "dw": 10, "head": 5, "big": 400, "pw": 85}


class ScriptedSearch(SensitivitySearch):
    """Fidelity = 1 - the harm of every layer still in INT8."""

    harm = {"stem": 0.02, "dw": 0.5, "head": 0.06, "big": 0.01, "pw": 0.001}

    def __init__(self) -> None:
        super().__init__(quantizer=None, conv_macs=MACS, workdir=Path("."), refine_min_mac_share=0.1)
        self.calls: list[list[str]] = []

    def _score(self, exclude: Sequence[str], inputs, meter) -> dict[str, float]:
        self.calls.append(list(exclude))
        fidelity = 1.0 - sum(h for name, h in self.harm.items() if name not in exclude)
        return {"map50_95": fidelity, "map50": fidelity, "output_nmse": 0.0}


def _ranking() -> list[LayerSensitivity]:
    return sorted((LayerSensitivity(n, MACS[n], ScriptedSearch.harm[n], 0.0) for n in MACS),
                  key=LayerSensitivity.priority, reverse=True)


def test_ranking_puts_harm_per_mac_first() -> None:
    assert [s.name for s in _ranking()] == ["dw", "head", "stem", "big", "pw"]


def test_search_finds_the_shortest_prefix_then_refines() -> None:
    search = ScriptedSearch()
    result = search.search(_ranking(), np.zeros(1), meter=None, goal=0.96)
    # dw + head are not enough (1 - 0.031 = 0.969 passes, so dw + head suffice)
    assert result.met_target and result.excluded == ["dw", "head"]
    assert int8_mac_share(MACS, result.excluded) == 1 - 15 / 1000


def test_refine_puts_big_layers_back_when_the_goal_holds() -> None:
    search = ScriptedSearch()
    result = search.search(_ranking(), np.zeros(1), meter=None, goal=0.975)
    # the prefix needs "stem" (0.969 < 0.975 without it); putting "big" back is not possible but
    # every refine step is recorded
    assert result.excluded[:3] == ["dw", "head", "stem"]
    assert any(step.requantized for step in result.steps)


def test_unreachable_goal_excludes_everything() -> None:
    result = ScriptedSearch().search(_ranking(), np.zeros(1), meter=None, goal=1.01)
    assert not result.met_target and set(result.excluded) == set(MACS)

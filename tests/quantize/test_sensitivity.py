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


def test_output_error_ranks_by_harm_per_mac_when_present() -> None:
    ranked = sorted([LayerSensitivity("big", 400, 0.0, 0.0, output_error=0.4),
                     LayerSensitivity("dw", 10, 0.0, 0.0, output_error=0.05),
                     LayerSensitivity("pw", 85, 0.9, 0.0, output_error=0.0)],  # mAP loss ignored when ranked by error
                    key=LayerSensitivity.priority, reverse=True)
    assert [s.name for s in ranked] == ["dw", "big", "pw"]


def test_fill_budget_spends_the_float_budget_in_ranking_order() -> None:
    search = ScriptedSearch()
    # 1000 MACs, at least 90 % INT8: dw (10) and head (5) fit, stem (500) does not, pw (85) still does.
    result = search.fill_budget(_ranking(), 0.9, np.zeros(1), meter=None, goal=0.96)
    assert result.excluded == ["dw", "head", "pw"]
    assert int8_mac_share(MACS, result.excluded) >= 0.9
    assert search.calls == [["dw", "head", "pw"]]  # one model scored, whatever the goal
    assert result.met_target  # 1 - (0.02 + 0.01) = 0.97 >= 0.96


def test_fill_budget_reports_a_missed_goal() -> None:
    result = ScriptedSearch().fill_budget(_ranking(), 0.99, np.zeros(1), meter=None, goal=0.99)
    assert result.excluded == ["dw"] and not result.met_target

"""Accuracy guard: find the Conv nodes whose INT8 hurts most and keep the fewest MACs in float.

1. Sensitivity: quantize one Conv at a time (everything else float) and measure the harm on the
   ranking images: the detection output error against the float model (``rank_by="output-error"``:
   smooth, every image and candidate counts) or the loss of fidelity (1 - mAP@0.5:0.95) with the
   normalised output error as a tie-breaker (``rank_by="fidelity"``).
2. Rank by harm per MAC kept in float: a cheap depthwise conv that wrecks the output goes first, a
   big pointwise conv that costs little accuracy goes last.
3. Exclude the first k of that ranking, with the smallest k whose fidelity on the tuning images
   reaches the target plus a margin (binary search: fidelity grows with k, roughly monotonically);
   or, with a float budget, every layer of the ranking that still fits in it (:meth:`fill_budget`).
4. Refine (search only): a prefix can drag in a big layer (the stem) only because it ranks just
   before the cut; try each excluded layer of at least ``refine_min_mac_share`` of the MACs back in
   INT8, largest first, and keep it there when the fidelity stays at the goal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamd.quantize.fidelity import FidelityMeter, ModelRunner
from streamd.quantize.progress import progress
from streamd.quantize.qdq import QdqQuantizer

logger = logging.getLogger(__name__)


RANK_BY = ("output-error", "fidelity")


@dataclass(frozen=True)
class LayerSensitivity:
    name: str
    macs: int
    fidelity_loss: float  # 1 - mAP@0.5:0.95 with only this Conv in INT8 (0 when ranked by output error)
    output_nmse: float
    output_error: float | None = None  # FidelityMeter.output_error with only this Conv in INT8

    def priority(self) -> float:
        """Sort key, larger = exclude first: harm per MAC kept in float.

        Ranked by output error, harm is the detection output error (smooth: every image and candidate
        counts a little). Ranked by fidelity, harm is the fidelity loss plus the normalised output
        error: on a few images mAP moves in steps of one detection and reads 0 for most single layers.
        """
        harm = self.output_error if self.output_error is not None else self.fidelity_loss + self.output_nmse
        return harm / max(self.macs, 1)


@dataclass(frozen=True)
class SearchStep:
    excluded_count: int
    int8_mac_share: float
    map50_95: float
    map50: float
    requantized: str | None = None  # refine steps: the excluded layer put back in INT8


@dataclass
class SearchResult:
    excluded: list[str]
    ranking: list[LayerSensitivity]
    steps: list[SearchStep] = field(default_factory=list)
    met_target: bool = False

    def to_dict(self) -> dict:
        return {"excluded": self.excluded, "met_target": self.met_target,
                "steps": [asdict(s) for s in self.steps],
                "ranking": [asdict(s) for s in self.ranking]}


def int8_mac_share(conv_macs: dict[str, int], excluded: Sequence[str]) -> float:
    total = sum(conv_macs.values())
    return 1.0 - sum(conv_macs[name] for name in excluded) / total if total else 0.0


class SensitivitySearch:
    """Runs steps 1-3 above; candidate models are written to ``workdir`` and scored in ONNX Runtime."""

    def __init__(self, quantizer: QdqQuantizer, conv_macs: dict[str, int], workdir: Path,
                 threads: int = 1, refine_min_mac_share: float = 0.01, fixed: Sequence[str] = ()) -> None:
        self.quantizer = quantizer
        self.conv_macs = conv_macs
        self.fixed = list(fixed)  # kept in float in every candidate, never searched or refined
        self.workdir = workdir
        self.threads = threads
        self.refine_min_mac_share = refine_min_mac_share
        self._candidate_path = workdir / "candidate.onnx"

    def _score(self, exclude: Sequence[str], inputs: np.ndarray, meter: FidelityMeter,
               correct_bias: bool = True) -> dict[str, float]:
        self.quantizer.quantize(self._candidate_path, exclude, correct_bias)
        outputs = ModelRunner(self._candidate_path, self.threads).run(inputs)
        return meter.score(outputs)

    def rank_layers(self, inputs: np.ndarray, meter: FidelityMeter, rank_by: str = "fidelity"
                    ) -> list[LayerSensitivity]:
        """Step 1 and 2: one candidate per Conv, each with only that Conv quantized.

        ``rank_by`` "output-error" scores each candidate by :meth:`FidelityMeter.output_error` alone
        (no decoding: cheap enough for every ranking image), "fidelity" by mAP and output NMSE."""
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got '{rank_by}'")
        names = list(self.conv_macs)
        sensitivities = []
        for name in progress(names, len(names), "sensitivity"):
            exclude = [other for other in names if other != name]
            # One layer's bias correction is second order next to its rounding: ranked without it.
            if rank_by == "output-error":
                self.quantizer.quantize(self._candidate_path, exclude, correct_bias=False)
                outputs = ModelRunner(self._candidate_path, self.threads).run(inputs)
                sensitivities.append(LayerSensitivity(name, self.conv_macs[name], 0.0, 0.0,
                                                      meter.output_error(outputs)))
            else:
                score = self._score(exclude, inputs, meter, correct_bias=False)
                sensitivities.append(LayerSensitivity(name, self.conv_macs[name], 1.0 - score["map50_95"],
                                                      score["output_nmse"]))
        return sorted(sensitivities, key=LayerSensitivity.priority, reverse=True)

    def fill_budget(self, ranking: Sequence[LayerSensitivity], min_int8_share: float, inputs: np.ndarray,
                    meter: FidelityMeter, goal: float, on_step: Callable[[SearchStep], None] | None = None,
                    first: SearchStep | None = None) -> SearchResult:
        """Keep in float the most harmful layers of ``ranking`` while the INT8 share of the MACs stays
        at or above ``min_int8_share`` (a layer that would cross it is passed over, cheaper ones after
        it still fit), then score that one model against ``goal``.

        A fixed MAC budget does not depend on where a noisy fidelity first crosses the goal on a few
        hundred detections, so the cut does not move with the selection images."""
        excluded = list(self.fixed)
        for layer in ranking:
            if layer.name not in excluded and int8_mac_share(self.conv_macs, [*excluded, layer.name]) >= min_int8_share:
                excluded.append(layer.name)
        result = SearchResult(excluded=excluded, ranking=list(ranking))
        if first is not None:
            result.steps.append(first)
        score = self._score(excluded, inputs, meter)
        step = SearchStep(len(excluded), int8_mac_share(self.conv_macs, excluded), score["map50_95"], score["map50"])
        result.steps.append(step)
        if on_step is not None:
            on_step(step)
        result.met_target = score["map50_95"] >= goal
        return result

    def fixed_only(self, inputs: np.ndarray, meter: FidelityMeter) -> SearchStep:
        """Every Conv in INT8 but the fixed ones: when this meets the goal, no ranking is needed."""
        score = self._score(self.fixed, inputs, meter)
        return SearchStep(len(self.fixed), int8_mac_share(self.conv_macs, self.fixed), score["map50_95"],
                          score["map50"])

    def search(self, ranking: Sequence[LayerSensitivity], inputs: np.ndarray, meter: FidelityMeter,
               goal: float, on_step: Callable[[SearchStep], None] | None = None,
               first: SearchStep | None = None) -> SearchResult:
        """Step 3: the smallest prefix of ``ranking`` to keep in float so fidelity >= ``goal``.

        ``first``: :meth:`fixed_only`'s step on the same images, when already scored."""
        order = [s.name for s in ranking if s.name not in self.fixed]
        result = SearchResult(excluded=list(self.fixed), ranking=list(ranking))
        cache: dict[int, float] = {}
        if first is not None:
            result.steps.append(first)
            cache[0] = first.map50_95

        def fidelity_with(count: int) -> float:
            if count not in cache:
                excluded = self.fixed + order[:count]
                score = self._score(excluded, inputs, meter)
                step = SearchStep(len(excluded), int8_mac_share(self.conv_macs, excluded),
                                  score["map50_95"], score["map50"])
                result.steps.append(step)
                if on_step is not None:
                    on_step(step)
                cache[count] = score["map50_95"]
            return cache[count]

        if fidelity_with(0) >= goal:
            result.met_target = True
            return result
        low, high = 0, len(order)  # fidelity_with(low) < goal; high: everything in float
        if fidelity_with(high) < goal:
            logger.warning("even with every Conv in float the fidelity stays below %.3f", goal)
            result.excluded = self.fixed + order
            return result
        while high - low > 1:
            middle = (low + high) // 2
            if fidelity_with(middle) >= goal:
                high = middle
            else:
                low = middle
        result.excluded = self.fixed + self._refine(order[:high], inputs, meter, goal, result, on_step)
        result.met_target = True
        return result

    def _refine(self, excluded: list[str], inputs: np.ndarray, meter: FidelityMeter, goal: float,
                result: SearchResult, on_step: Callable[[SearchStep], None] | None) -> list[str]:
        total = sum(self.conv_macs.values())
        big = sorted((n for n in excluded if self.conv_macs[n] >= self.refine_min_mac_share * total),
                     key=lambda n: -self.conv_macs[n])
        kept = list(excluded)
        for name in big:
            trial = [n for n in kept if n != name]
            score = self._score(self.fixed + trial, inputs, meter)
            step = SearchStep(len(self.fixed) + len(trial), int8_mac_share(self.conv_macs, self.fixed + trial),
                              score["map50_95"],
                              score["map50"], requantized=name)
            result.steps.append(step)
            if on_step is not None:
                on_step(step)
            if score["map50_95"] >= goal:
                kept = trial
        return kept

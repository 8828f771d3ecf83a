"""The tool's steps, in order: load, calibrate, guard, write, score, build, report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from streamd.quantize.calibration import ImageSet, list_images, load_images
from streamd.quantize.errors import EXIT_FIDELITY_MISSED, EXIT_OK, QuantizeError
from streamd.quantize.family import ModelFamily, detect_family, family_float_nodes
from streamd.quantize.fidelity import DetectionModelSpec, FidelityMeter, ModelRunner
from streamd.quantize.model import ModelInfo, load_model, save_model
from streamd.quantize.qdq import QdqQuantizer, calibration_cache_key, count_qdq_nodes
from streamd.quantize.report import print_summary, write_report
from streamd.quantize.sensitivity import (
    LayerSensitivity,
    SearchResult,
    SearchStep,
    SensitivitySearch,
    int8_mac_share,
)
from streamd.yolox.preprocess import CONVENTIONS

logger = logging.getLogger(__name__)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    def lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 2)
        return now

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.monotonic() - self._started, 2)}


def _split_images(args: argparse.Namespace) -> tuple[list[Path], list[Path], list[Path]]:
    """Calibration, selection (empty: the search scores on the calibration images) and evaluation paths."""
    listed = list_images(args.calib)
    calibration = listed[:args.calib_count]
    selection = list_images(args.select_source)[:args.select_count] if args.select_source else []
    if args.eval_source:
        evaluation = list_images(args.eval_source)[:args.eval_count]
    else:
        evaluation = listed[args.calib_count:args.calib_count + args.eval_count]
    return calibration, selection, evaluation


def _tuned_on(evaluation: list[Path], calibration: list[Path], selection: list[Path]) -> int:
    """How many evaluation images the calibration or the search also used (0: a held-out figure)."""
    overlap = {p.resolve() for p in evaluation} & {p.resolve() for p in (*calibration, *selection)}
    if overlap:
        logger.warning("%d evaluation image(s) are also calibration or selection images (e.g. %s): the fidelity "
                       "is not a held-out figure", len(overlap), sorted(overlap)[0])
    return len(overlap)


def _meter(spec: DetectionModelSpec, outputs: list[np.ndarray], what: str, reference_score: float) -> FidelityMeter:
    meter = FidelityMeter(spec, outputs, reference_score)
    if meter.reference_detection_count == 0:
        raise QuantizeError(f"the float model detects nothing above score {meter.reference_score_threshold} on the "
                            f"{what} images, so fidelity is undefined: use images with objects in them (or a lower "
                            "--reference-score for a model whose scores are all low)")
    return meter


def _load_ranking(path: Path) -> list[LayerSensitivity] | None:
    if not path.is_file():
        return None
    ranking = [LayerSensitivity(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
    return sorted(ranking, key=LayerSensitivity.priority, reverse=True)


def _guard(args: argparse.Namespace, info: ModelInfo, family: ModelFamily, quantizer: QdqQuantizer,
           calibration: ImageSet, selection: ImageSet | None, float_runner: ModelRunner, spec: DetectionModelSpec,
           workdir: Path, timer: _Timer, cache_key: str, fixed: list[str], report: dict[str, Any]) -> list[str]:
    """The accuracy guard: rank layers on a few calibration (or selection) images, search on the selection
    images (or, without them, on all calibration images). ``fixed``: kept in float whatever the search finds."""
    started = time.monotonic()
    reference = float_runner.run(calibration.inputs)
    tuning = selection if selection is not None else calibration
    tuning_name = "selection" if selection is not None else "calibration"
    tuning_reference = float_runner.run(tuning.inputs) if selection is not None else reference
    tuning_meter = _meter(spec, tuning_reference, tuning_name, args.reference_score)
    ranked, ranked_reference = (selection, tuning_reference) if args.rank_on == "selection" and selection is not None \
        else (calibration, reference)
    count = min(args.search_count or (len(ranked) if args.rank_by == "output-error" else 16), len(ranked))
    search_meter = _meter(spec, [o[:count] for o in ranked_reference], "sensitivity", args.reference_score)
    search = SensitivitySearch(quantizer, info.conv_macs, workdir, args.threads, fixed=fixed)
    # Ranked on other images than the calibration ones: their paths are part of the key too.
    ranked_key = cache_key if ranked is calibration else calibration_cache_key(
        info.model, ranked.paths[:count], args.method, family.convention, args.percentile)
    ranking_path = (quantizer.cache_path.parent
                    / f"sensitivity-{cache_key}-{quantizer.settings_key()}-{count}"
                      f"{'' if ranked is calibration else '-' + ranked_key}-{args.rank_by}.json")
    goal = min(1.0, args.min_fidelity + args.margin)

    def log_step(step: SearchStep) -> None:
        what = f"{step.requantized} back in INT8: " if step.requantized else ""
        print(f"search: {what}{step.excluded_count:3d} Conv in float, INT8 MAC share {step.int8_mac_share:.3f}, "
              f"fidelity {step.map50_95:.4f} on {len(tuning)} {tuning_name} images", file=sys.stderr)

    # Everything in INT8 but the family's fixed nodes may already do: then the ranking (one candidate
    # model per Conv, most of the tool's time) is skipped.
    first = search.fixed_only(tuning.inputs, tuning_meter)
    log_step(first)
    ranking_cached = False
    if first.map50_95 >= goal:
        result = SearchResult(excluded=list(fixed), ranking=[], steps=[first], met_target=True)
    else:
        ranking = _load_ranking(ranking_path)
        ranking_cached = ranking is not None
        if ranking is None:
            ranking = search.rank_layers(ranked.inputs[:count], search_meter, args.rank_by)
            ranking_path.write_text(json.dumps([asdict(s) for s in ranking]), encoding="utf-8")
        started = timer.lap("sensitivity", started)
        if args.int8_target is not None:
            result = search.fill_budget(ranking, args.int8_target, tuning.inputs, tuning_meter, goal, log_step, first)
        else:
            result = search.search(ranking, tuning.inputs, tuning_meter, goal, log_step, first)
    timer.lap("search", started)
    report["search"] = {"images": tuning_name, "image_count": len(tuning), "goal": goal, "ranking_images": count,
                        "ranked_on": "selection" if ranked is selection else "calibration",
                        "rank_by": args.rank_by, "int8_target": args.int8_target,
                        "ranking_cached": ranking_cached, **result.to_dict()}
    return result.excluded


def _quantize_int8(args: argparse.Namespace, info: ModelInfo, family: ModelFamily, calibration: ImageSet,
                   selection: ImageSet | None, float_runner: ModelRunner, spec: DetectionModelSpec, workdir: Path,
                   timer: _Timer, report: dict[str, Any]) -> list[str]:
    started = time.monotonic()
    cache_key = calibration_cache_key(info.model, calibration.paths, args.method, family.convention, args.percentile)
    cache_dir = args.cache_dir if args.cache_dir is not None else args.output.parent / ".calib-cache"
    quantizer = QdqQuantizer(info.model, info.input_name, args.method,
                             cache_dir / f"ranges-{args.method}-{cache_key}.json", args.percentile, args.threads,
                             bias_correction_inputs=None if args.no_bias_correction else calibration.inputs)
    try:
        cache_hit = quantizer.cache_hit
        if not cache_hit:
            quantizer.calibrate(calibration.inputs)
        timer.lap("calibration", started)
        report["calibration"].update(cache_hit=cache_hit, cache_path=str(quantizer.cache_path))
        if args.exclude is not None:
            unknown = sorted(set(args.exclude) - set(info.conv_macs))
            if unknown:
                raise QuantizeError(f"--exclude names no Conv node: {unknown}; Conv nodes are e.g. "
                                    f"{list(info.conv_macs)[:5]}")
            excluded = list(args.exclude)
        elif args.no_guard:
            excluded = []
        else:
            fixed = [] if args.no_family_float else family_float_nodes(family.family, info.model, info.conv_macs)
            report["family_float_nodes"] = fixed
            excluded = _guard(args, info, family, quantizer, calibration, selection, float_runner, spec, workdir, timer,
                              cache_key, fixed, report)
        report["bias_correction"] = {"enabled": not args.no_bias_correction,
                                     "convs": quantizer.quantize(args.output, excluded)}
    finally:
        quantizer.close()
    return excluded


def _write_float(args: argparse.Namespace, info: ModelInfo) -> None:
    if args.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        save_model(convert_float_to_float16(info.model, keep_io_types=True), args.output)
    else:
        save_model(info.model, args.output)


def _score(args: argparse.Namespace, evaluation: ImageSet, meter: FidelityMeter) -> dict[str, Any]:
    started = time.monotonic()
    runner = ModelRunner(args.output, args.threads)
    outputs = runner.run(evaluation.inputs)
    milliseconds = (time.monotonic() - started) * 1000 / len(evaluation)
    score = meter.score(outputs)
    return {"map50_95": round(score["map50_95"], 4), "map50": round(score["map50"], 4),
            # The smooth companion of mAP (what --rank-by output-error ranks by): no threshold to cross.
            "output_error": round(meter.output_error(outputs), 5),
            "classes": score["classes"], "images": len(evaluation),
            "reference_detections": meter.reference_detection_count,
            "reference_score_threshold": meter.reference_score_threshold,
            "onnxruntime_cpu_ms_per_image": round(milliseconds, 1)}


def run(args: argparse.Namespace) -> int:
    """Everything after argument parsing; raises :class:`QuantizeError` for bad input."""
    from streamd.quantize.engine import build_engine_for_report

    timer = _Timer()
    started = time.monotonic()
    info = load_model(args.onnx, args.input_size)
    family = detect_family(info.model, info.output_shapes, info.input_width, info.input_height)
    if args.convention != "auto":
        family = replace(family, convention=args.convention)
    convention = CONVENTIONS[family.convention]
    calibration_paths, selection_paths, evaluation_paths = _split_images(args)
    calibration = load_images(calibration_paths, convention, info.input_width, info.input_height,
                              "calibration images")
    selection = (load_images(selection_paths, convention, info.input_width, info.input_height, "selection images")
                 if selection_paths else None)
    held_out = bool(evaluation_paths) and not _tuned_on(evaluation_paths, calibration_paths, selection_paths)
    if evaluation_paths:
        evaluation = load_images(evaluation_paths, convention, info.input_width, info.input_height,
                                 "evaluation images")
    else:
        logger.warning("no held-out images (pass --eval, or more images than --calib-count): "
                       "fidelity is measured on the calibration images")
        evaluation = calibration
    started = timer.lap("load", started)
    report: dict[str, Any] = {
        "model": str(args.onnx), "output": str(args.output), "precision": args.precision,
        "method": args.method if args.precision == "int8" else None,
        "input": {"name": info.input_name, "width": info.input_width, "height": info.input_height,
                  "convention": family.convention},
        "calibration": {"source": str(args.calib), "images": len(calibration),
                        "skipped_unreadable": len(calibration.skipped),
                        "skipped": [str(p) for p in calibration.skipped]},
        "selection": ({"source": str(args.select_source), "images": len(selection),
                       "skipped_unreadable": len(selection.skipped)} if selection is not None else None),
        "evaluation": {"images": len(evaluation), "held_out": held_out,
                       "skipped_unreadable": len(evaluation.skipped) if evaluation_paths else 0,
                       "first": str(evaluation.paths[0]), "last": str(evaluation.paths[-1])},
    }
    with tempfile.TemporaryDirectory(prefix="streamd-quantize-") as tmp:
        workdir = Path(tmp)
        float_path = workdir / "float.onnx"
        save_model(info.model, float_path)
        float_runner = ModelRunner(float_path, args.threads)
        evaluation_reference = float_runner.run(evaluation.inputs)
        family = family.resolved(evaluation_reference[0][:1])
        spec = DetectionModelSpec(family.layout, family.num_classes, info.input_width, info.input_height)
        evaluation_meter = _meter(spec, evaluation_reference, "evaluation", args.reference_score)
        report["layout"] = {"family": family.family, "layout": spec.layout, "num_classes": spec.num_classes}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.precision == "int8":
            excluded = _quantize_int8(args, info, family, calibration, selection, float_runner, spec, workdir, timer,
                                      report)
            report["excluded_nodes"] = [{"name": n, "macs": info.conv_macs[n]} for n in excluded]
            report["conv_macs_total"] = info.total_conv_macs
            report["int8_conv_mac_share"] = round(int8_mac_share(info.conv_macs, excluded), 4)
            report["qdq_nodes"] = count_qdq_nodes(onnx.load(str(args.output)))
        else:
            _write_float(args, info)
        started = time.monotonic()
        report["fidelity"] = _score(args, evaluation, evaluation_meter)
        timer.lap("evaluation", started)
        reasons = []
        if report["fidelity"]["map50_95"] < args.min_fidelity:
            reasons.append(f"fidelity {report['fidelity']['map50_95']:.4f} < --min-fidelity {args.min_fidelity}")
        if args.precision == "int8" and report["int8_conv_mac_share"] < args.min_int8_share:
            reasons.append(f"INT8 MAC share {report['int8_conv_mac_share']:.3f} < --min-int8-share "
                           f"{args.min_int8_share}")
        report["verdict"] = {"passed": not reasons, "reasons": reasons, "min_fidelity": args.min_fidelity,
                             "min_int8_share": args.min_int8_share}
        exit_code = EXIT_OK if not reasons else EXIT_FIDELITY_MISSED
        if args.engine is not None:
            started = time.monotonic()
            report["engine"], engine_exit = build_engine_for_report(args, float_path, calibration, info.input_name)
            timer.lap("engine", started)
            if engine_exit:
                print(f"quantize: error: {report['engine']['error']}", file=sys.stderr)
            exit_code = engine_exit or exit_code
    report["seconds"] = timer.total()
    write_report(report, args.report)
    print_summary(report, sys.stdout)
    return exit_code

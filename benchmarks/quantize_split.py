#!/usr/bin/env python3
"""INT8 that holds on images it never saw: ``streamd quantize`` tuned on a three-way split.

    python benchmarks/quantize_split.py lists --work /tmp/split          # the split, as list files
    python benchmarks/quantize_split.py select --work /tmp/split --name NAME [quantize options...]
    python benchmarks/quantize_split.py final --work /tmp/split --name NAME --out RESULT.json [options...]

The images: ``calib/coco_val2017_100`` (100 COCO val2017 images, sorted by name), frames of
``media/vtest.avi`` (a street video, 795 frames) and ``media/dog.jpg``, split before any run:

- calibration: COCO 1-50, and every 13th frame of the video's first third;
- selection: COCO 51-75, and every 13th frame of its second third;
- held-out: COCO 76-100, every 13th frame of its last third, and dog.jpg.

``select`` runs the tool with ``--select`` = the selection images and scores on the selection images
too (the report says ``held_out: false``): every choice (method, margin, calibration images) is made on
those figures. ``final`` runs the chosen settings once with the held-out images as ``--eval`` and
records the result with its provenance, the fidelity on the held-out images overall and per source.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COCO = SHARED / "calib" / "coco_val2017_100"
VTEST = SHARED / "media" / "vtest.avi"
DOG = SHARED / "media" / "dog.jpg"
MODEL = SHARED / "models" / "yolox_nano.onnx"
FRAME_STEP = 13


def interleave(first: list[Path], second: list[Path]) -> list[Path]:
    merged = [p for pair in zip(first, second) for p in pair]
    return merged + first[len(second):] + second[len(first):]


def write_lists(work: Path) -> dict[str, list[Path]]:
    """The three list files under ``work`` (and the video frames they name, as PNG)."""
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(VTEST))
    frames: list[Path] = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % FRAME_STEP == 0:
            path = frames_dir / f"vtest_{index:04d}.png"
            if not path.exists():
                cv2.imwrite(str(path), frame)
            frames.append(path)
        index += 1
    capture.release()
    third = index / 3
    by_third = [[p for p in frames if k * third <= int(p.stem.split("_")[1]) < (k + 1) * third] for k in range(3)]
    coco = sorted(p for p in COCO.iterdir() if p.suffix.lower() == ".jpg")
    # Sources alternate, so the first images of a list (the ones ranked on) hold both.
    split = {"calibration": interleave(coco[:50], by_third[0]), "selection": interleave(coco[50:75], by_third[1]),
             "held_out": interleave(coco[75:], by_third[2]) + [DOG]}
    for name, paths in (*split.items(), ("calibration_coco", coco[:50])):
        (work / f"{name}.txt").write_text("".join(f"{p}\n" for p in paths))
    return split


def sources(paths: list[Path]) -> dict[str, int]:
    return {"coco": sum(p.parent == COCO for p in paths),
            "vtest_frames": sum(p.stem.startswith("vtest_") for p in paths), "photos": sum(p == DOG for p in paths)}


def run_tool(work: Path, name: str, evaluation: str, calibration: str, search_on: str, options: list[str]) -> dict:
    from streamd.quantize.cli import main

    out = work / "runs" / name
    out.mkdir(parents=True, exist_ok=True)
    select = ["--select", str(work / "selection.txt"), "--select-count", "1000"] if search_on == "selection" else []
    argv = ["--onnx", str(MODEL), "--calib", str(work / f"{calibration}.txt"), "--calib-count", "1000", *select,
            "--eval", str(work / f"{evaluation}.txt"), "--eval-count", "1000",
            "--output", str(out / "int8.onnx"), "--report", str(out / f"report-{evaluation}.json"),
            "--cache-dir", str(work / "cache"), *options]
    code = main(argv)
    report = json.loads((out / f"report-{evaluation}.json").read_text())
    report["exit_code"] = code
    return report


def per_source(work: Path, name: str, held_out: list[Path], report: dict) -> dict[str, dict]:
    """The held-out fidelity of the final model split by source (the same single evaluation, broken down)."""
    from streamd.quantize.calibration import load_images
    from streamd.quantize.fidelity import DetectionModelSpec, FidelityMeter, ModelRunner
    from streamd.quantize.model import load_model, save_model
    from streamd.yolox.preprocess import CONVENTIONS

    info = load_model(MODEL)
    spec = DetectionModelSpec(report["layout"]["layout"], report["layout"]["num_classes"], info.input_width,
                              info.input_height)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        save_model(info.model, float_path)
        result = {}
        groups = {"coco": [p for p in held_out if p.parent == COCO],
                  "other_real_images": [p for p in held_out if p.parent != COCO]}
        for group, paths in groups.items():
            images = load_images(paths, CONVENTIONS[report["input"]["convention"]], info.input_width,
                                 info.input_height, group)
            meter = FidelityMeter(spec, ModelRunner(float_path).run(images.inputs))
            score = meter.score(ModelRunner(work / "runs" / name / "int8.onnx").run(images.inputs))
            result[group] = {"images": len(images), "reference_detections": meter.reference_detection_count,
                             "map50_95": round(score["map50_95"], 4), "map50": round(score["map50"], 4)}
    return result


def summary(report: dict) -> dict:
    search = report.get("search") or {}
    final_step = next((s for s in reversed(search.get("steps", [])) if s["map50_95"] >= search.get("goal", 1)), None)
    return {"method": report["method"], "fidelity": report["fidelity"], "verdict": report["verdict"],
            "int8_conv_mac_share": report["int8_conv_mac_share"],
            "excluded_nodes": [e["name"] for e in report["excluded_nodes"]],
            "search_goal": search.get("goal"), "search_images": search.get("images"),
            "search_fidelity_at_goal": final_step["map50_95"] if final_step else None,
            "held_out": report["evaluation"]["held_out"], "seconds": report["seconds"]}


def _selection_row(path: Path) -> dict:
    run = json.loads(path.read_text())
    return {"settings": run.get("settings"), "map50_95": run["fidelity"]["map50_95"],
            "int8_conv_mac_share": run["int8_conv_mac_share"], "float_convs": len(run["excluded_nodes"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lists", "select", "final"))
    parser.add_argument("--work", type=Path, required=True, help="folder for frames, lists, caches and runs")
    parser.add_argument("--name", default="default", help="a name for this setting")
    parser.add_argument("--out", type=Path, help="final: the result JSON")
    parser.add_argument("--calibration", choices=("calibration", "calibration_coco"), default="calibration",
                        help="calibration images: the split's (COCO and video frames) or its COCO part only")
    parser.add_argument("--search-on", choices=("selection", "calibration"), default="selection",
                        help="images the search checks its goal on")
    args, options = parser.parse_known_args(argv)
    split = write_lists(args.work)
    if args.stage == "lists":
        print(json.dumps({k: sources(v) for k, v in split.items()}, indent=2))
        return 0
    evaluation = "selection" if args.stage == "select" else "held_out"
    report = run_tool(args.work, args.name, evaluation, args.calibration, args.search_on, options)
    result = {**summary(report), "settings": {"calibration": args.calibration, "search_on": args.search_on,
                                              "options": options}}
    print(json.dumps(result, indent=2))
    (args.work / "runs" / args.name / f"summary-{evaluation}.json").write_text(json.dumps(result, indent=2))
    if args.stage == "final":
        from record import provenance

        document = {**provenance(), "model": MODEL.name, "quantize_split": {
            "split": {k: sources(v) for k, v in split.items()}, "frame_step": FRAME_STEP,
            "calibration": args.calibration, "search_on": args.search_on, "options": options, "held_out": result,
            # Every setting scored on the selection images (the choice was made on these), by run name.
            "selection_runs": {path.parent.name: _selection_row(path)
                               for path in sorted((args.work / "runs").glob("*/summary-selection.json"))},
            "held_out_by_source": per_source(args.work, args.name, split["held_out"], report)}}
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

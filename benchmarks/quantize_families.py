#!/usr/bin/env python3
"""INT8 per model family: ``streamd quantize`` (the accuracy guard on) on one model of each family.

    python benchmarks/quantize_families.py --work /tmp/qf \\
        --model yolov8n=../shared/models/ultralytics/yolov8n.onnx:0.0001 ... \\
        --out benchmarks/results/MACHINE_quantize-families.json [quantize options...]

``--model NAME=PATH[:SCORE]``: SCORE is the float model's detection threshold taken as ground truth
(``--reference-score``; default 0.3). Models whose scores are all low (random or briefly trained weights)
need a lower one. Every model is calibrated on the first ``--calib-count`` images of
``calib/coco_val2017_100`` and scored on the next ``--eval-count``, with the options after the known ones
passed to the tool unchanged. Per model the result holds the family, layout, fidelity, the share of the
Conv MACs in INT8, the share of all MACs (Conv, MatMul, Gemm) in INT8, the Conv nodes kept in float and
the time; and how much the float model's output depends on the picture (``picture_dependence``: the
mean over output elements of their standard deviation across the evaluation images, over their mean
absolute value), which says whether its fidelity figure means anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CALIB = SHARED / "calib" / "coco_val2017_100"


def matmul_macs(model_path: Path) -> int:
    """MACs per image of the MatMul and Gemm nodes (the ones Q/DQ on Conv inputs leaves in float)."""
    from onnx import shape_inference

    from streamd.quantize.model import load_model

    model = load_model(model_path).model
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not a or not out or 0 in a or 0 in out:
            continue
        transposed = node.op_type == "Gemm" and any(attr.name == "transA" and attr.i for attr in node.attribute)
        inner = a[-2] if transposed else a[-1]
        total += int(np.prod(out)) * int(inner)
    return total


def picture_dependence(model_path: Path, report: dict, images: int) -> float:
    """How much the float model's first output moves from picture to picture (see the module doc)."""
    from streamd.quantize.calibration import list_images, load_images
    from streamd.quantize.fidelity import ModelRunner
    from streamd.quantize.model import load_model, save_model
    from streamd.yolox.preprocess import CONVENTIONS

    info = load_model(model_path)
    paths = list_images(CALIB)[:images]
    inputs = load_images(paths, CONVENTIONS[report["input"]["convention"]], info.input_width,
                         info.input_height, "picture dependence").inputs
    with tempfile.TemporaryDirectory() as tmp:
        save_model(info.model, Path(tmp) / "float.onnx")
        output = ModelRunner(Path(tmp) / "float.onnx").run(inputs)[0].astype(np.float64)
    return float(np.mean(output.std(axis=0)) / max(float(np.mean(np.abs(output))), 1e-12))


def run_one(work: Path, name: str, path: Path, reference_score: float, calib_count: int, eval_count: int,
            options: list[str]) -> dict:
    from streamd.quantize.cli import main

    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    code = main(["--onnx", str(path), "--calib", str(CALIB), "--calib-count", str(calib_count),
                 "--eval-count", str(eval_count), "--reference-score", str(reference_score),
                 "--output", str(out / "int8.onnx"), "--report", str(out / "report.json"),
                 "--cache-dir", str(work / "cache"), *options])
    report = json.loads((out / "report.json").read_text())
    conv_total = report["conv_macs_total"]
    conv_int8 = report["int8_conv_mac_share"] * conv_total
    other = matmul_macs(path)
    return {
        "model": path.name, "family": report["layout"]["family"], "layout": report["layout"]["layout"],
        "input": [report["input"]["width"], report["input"]["height"]], "convention": report["input"]["convention"],
        "reference_score": reference_score, "exit_code": code,
        "fidelity": report["fidelity"], "meets_0_90": report["fidelity"]["map50_95"] >= 0.90,
        "int8_conv_mac_share": report["int8_conv_mac_share"], "conv_macs": conv_total,
        "matmul_gemm_macs": other, "int8_mac_share_all": round(conv_int8 / (conv_total + other), 4),
        "family_float_nodes": report.get("family_float_nodes", []),
        "kept_float": [e["name"] for e in report["excluded_nodes"]],
        "search_steps": len((report.get("search") or {}).get("steps", [])),
        "ranked": bool((report.get("search") or {}).get("ranking")),
        "qdq_nodes": report["qdq_nodes"], "seconds": report["seconds"],
        "picture_dependence": float(f"{picture_dependence(path, report, min(eval_count, 16)):.3g}"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH[:SCORE]")
    parser.add_argument("--calib-count", type=int, default=50)
    parser.add_argument("--eval-count", type=int, default=50)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--note", help="where the models come from, recorded with the result")
    args, options = parser.parse_known_args(argv)
    results = {}
    for entry in args.model:
        name, _, rest = entry.partition("=")
        path, _, score = rest.partition(":")
        results[name] = run_one(args.work, name, Path(path), float(score or 0.3), args.calib_count,
                                args.eval_count, options)
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    if args.out:
        from record import provenance

        document = {**provenance(), **({"note": args.note} if args.note else {}),
                    "calibration_images": args.calib_count, "evaluation_images": args.eval_count,
                    "options": options, "quantize_families": results}
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tools/quantize.py`` / ``streamd quantize``: arguments, error-to-exit-code mapping."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from streamd.inference.tensorrt_build import PRECISIONS
from streamd.quantize.errors import EXIT_BAD_INPUT, QuantizeError
from streamd.quantize.qdq import METHODS
from streamd.quantize.sensitivity import RANK_BY
from streamd.yolox.preprocess import CONVENTIONS

logger = logging.getLogger("streamd.quantize")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got '{text}'") from error
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    return width, height


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {text}")
    return value


def build_parser(prog: str = "tools/quantize.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Quantize a detector ONNX model (YOLOX, Ultralytics YOLO, NMS-free end-to-end, RT-DETR) to "
                    "INT8 Q/DQ (with an accuracy guard) or convert it for FP16/FP32, report its fidelity against the "
                    "float model, optionally build a TensorRT engine.",
        epilog="exit codes: 0 ok; 1 fidelity or INT8-share target missed; 2 bad input; "
               "3 TensorRT missing for --engine (the ONNX is written); 4 TensorRT build failed")
    parser.add_argument("--onnx", required=True, type=Path, help="float ONNX model (opset < 13 is upgraded)")
    parser.add_argument("--calib", required=True, help="calibration image folder (sorted by name) or list file")
    parser.add_argument("--output", required=True, type=Path, help="output ONNX (Q/DQ for int8)")
    parser.add_argument("--engine", type=Path, help="also build a TensorRT engine here (needs tensorrt)")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument("--method", choices=METHODS, default="percentile",
                        help="activation range calibration (default: percentile, the best measured on YOLOX)")
    parser.add_argument("--percentile", type=float, default=99.999, help="percentile for --method percentile")
    parser.add_argument("--report", type=Path, help="write the report JSON here (it is always printed)")
    parser.add_argument("--min-fidelity", type=_fraction, default=0.9,
                        help="target mAP@0.5:0.95 against the float model; exit 1 when missed (default 0.9)")
    parser.add_argument("--min-int8-share", type=_fraction, default=0.0,
                        help="fail (exit 1) when less than this share of conv MACs ends up in INT8")
    parser.add_argument("--margin", type=_fraction, default=0.02,
                        help="the search aims at min-fidelity + margin on the calibration images (default 0.02)")
    parser.add_argument("--calib-count", type=int, default=50, help="calibration images: the first N (default 50)")
    parser.add_argument("--eval", dest="eval_source",
                        help="held-out evaluation images (folder or list); default: the images after the "
                             "calibration ones in --calib")
    parser.add_argument("--eval-count", type=int, default=50, help="evaluation images (default 50)")
    parser.add_argument("--select", dest="select_source",
                        help="selection images (folder or list): the search's fidelity goal is checked on these "
                             "instead of the calibration images, so tuning never sees the evaluation images")
    parser.add_argument("--select-count", type=int, default=50, help="selection images: the first N (default 50)")
    parser.add_argument("--rank-on", choices=("calibration", "selection"), default="calibration",
                        help="images the layer sensitivity is ranked on: the first --search-count of these "
                             "(default calibration; selection needs --select)")
    parser.add_argument("--reference-score", type=_fraction, default=0.3,
                        help="the float model's detections above this score are the ground truth (default 0.3)")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="leave the INT8 Convs' float biases as they are; by default each absorbs the mean "
                             "output shift INT8 adds, measured on the calibration images")
    parser.add_argument("--no-family-float", action="store_true",
                        help="do not keep the model family's fixed float nodes (e.g. the box decoding convs)")
    parser.add_argument("--search-count", type=int, default=None,
                        help="images the layer sensitivity is ranked on: the first N of --rank-on's images "
                             "(default: all of them with --rank-by output-error, 16 with fidelity)")
    parser.add_argument("--rank-by", choices=RANK_BY, default="output-error",
                        help="what ranks a layer's harm, with only that Conv in INT8: output-error (default): "
                             "the error of every candidate's class scores and box against the float model, "
                             "smooth and cheap, so every ranking image counts; fidelity: mAP loss plus the raw "
                             "output error, which moves in one-detection steps on a few images")
    parser.add_argument("--int8-target", type=_fraction, default=None,
                        help="spend a float budget instead of stopping where the goal is first met: keep the "
                             "most harmful Conv in float as long as this share of the conv MACs stays INT8 "
                             "(e.g. 0.91), then check the goal once; the cut then does not move with the "
                             "noise of mAP on the selection images")
    parser.add_argument("--exclude", nargs="*", default=None, metavar="NODE",
                        help="Conv nodes to keep in float; skips the sensitivity search")
    parser.add_argument("--no-guard", action="store_true", help="plain quantization: no sensitivity search")
    parser.add_argument("--input-size", type=_size, help="WIDTHxHEIGHT, required for dynamic input shapes")
    parser.add_argument("--convention", choices=["auto", *sorted(CONVENTIONS)], default="auto",
                        help="preprocessing convention, as in the daemon's config (default auto: the one the "
                             "model family's exports expect, read from the outputs and metadata)")
    parser.add_argument("--cache-dir", type=Path,
                        help="calibration cache folder (default: OUTPUT's folder/.calib-cache)")
    parser.add_argument("--legacy-calibrator", action="store_true",
                        help="TensorRT <= 10 only (DLA/JetPack 6): build the INT8 engine from the float ONNX with "
                             "IInt8EntropyCalibrator2 and a calibration cache")
    parser.add_argument("--dla-core", type=int, help="build the engine for this DLA core (GPU fallback on)")
    parser.add_argument("--workspace-mib", type=int, default=1024, help="TensorRT workspace (MiB)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads for calibration and scoring (default 1: shared machines)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "tools/quantize.py") -> int:
    """Run the tool; returns the process exit code (see ``--help``)."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name, value in (("--calib-count", args.calib_count), ("--eval-count", args.eval_count),
                        ("--search-count", 1 if args.search_count is None else args.search_count),
                        ("--select-count", args.select_count),
                        ("--threads", args.threads)):
        if value <= 0:
            print(f"quantize: error: {name} must be positive, got {value}", file=sys.stderr)
            return EXIT_BAD_INPUT
    from streamd.quantize.run import run

    try:
        return run(args)
    except QuantizeError as error:
        print(f"quantize: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())

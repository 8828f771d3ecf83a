#!/usr/bin/env python3
"""A trained Ultralytics export through streamd against Ultralytics itself: mAP on the COCO images in shared/.

There are no labels beside the images, so the reference implementation's detections are the ground truth:
Ultralytics' own end-to-end prediction (``YOLO(path).predict``: its letterbox, its inference, its
``non_max_suppression`` and ``scale_boxes``) above the reference threshold, once with the ONNX export
(ONNX Runtime through Ultralytics' AutoBackend) and, with ``--weights``, once with the PyTorch weights the
export was made from. streamd's side is the CPU detector the daemon builds (``build_detector``: its
preprocessing, ONNX Runtime with the preprocessing folded into the graph, its decoder and NMS) on the same
BGR images. Scored as ``streamd.quantize.fidelity`` scores INT8: streamd's detections at a low threshold
(so recall is not cut), mAP@0.5:0.95 against the reference's at 0.3, the same NMS IoU on both sides; and at
the same threshold on both sides, the boxes matched one to one as ``ultralytics_parity.py`` matches them.

Run with a Python that has ``ultralytics`` and ``torch`` (a tool here, never a dependency of streamd); this
checkout is put on the path:

    python benchmarks/trained_model_map.py --model best.onnx --weights best.pt \\
        --out benchmarks/results/MACHINE_trained-model-map.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from record import provenance  # noqa: E402
from ultralytics_parity import match  # noqa: E402

from streamd.config.schema import ModelConfig  # noqa: E402
from streamd.evaluation.detection_map import Boxes, mean_average_precision  # noqa: E402
from streamd.frame import Frame  # noqa: E402
from streamd.inference.factory import build_detector  # noqa: E402
from streamd.quantize.fidelity import CANDIDATE_SCORE_THRESHOLD, NMS_THRESHOLD, REFERENCE_SCORE_THRESHOLD  # noqa: E402
from streamd.yolox.metadata import read_metadata  # noqa: E402

MAX_DETECTIONS = 300  # Ultralytics' max_det default, on both sides


def use_ultralytics_nms() -> bool:
    """Where torchvision does not import (a build for another torch), a stand-in module whose ``ops.nms`` is
    Ultralytics' own ``TorchNMS.nms`` (documented by Ultralytics as giving torchvision's result): Ultralytics
    imports torchvision before predicting. Returns whether the stand-in is used."""
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:  # noqa: BLE001 - a broken build raises RuntimeError from its operator registrations
        sys.modules.pop("torchvision", None)
    from ultralytics.utils.nms import TorchNMS

    stand_in = types.ModuleType("torchvision")
    stand_in.ops = types.SimpleNamespace(nms=TorchNMS.nms)
    sys.modules["torchvision"] = stand_in
    return True


def reference_boxes(path: Path, images: list[np.ndarray], conf: float, iou: float, rect: bool = True
                    ) -> tuple[list[tuple], float]:
    """Ultralytics' own predictions, (boxes, scores, classes) per image, and the median seconds an image.
    ``rect``: Ultralytics' predict default; for PyTorch weights it pads each image only to a multiple of the
    stride, not to the square input an export has."""
    from ultralytics import YOLO

    model = YOLO(str(path), task="detect")
    found, seconds = [], []
    for image in images:
        started = time.perf_counter()
        result = model.predict(image, conf=conf, iou=iou, max_det=MAX_DETECTIONS, device="cpu", verbose=False,
                               rect=rect)[0]
        seconds.append(time.perf_counter() - started)
        data = result.boxes.data.numpy()
        found.append((data[:, :4].copy(), data[:, 4].copy(), data[:, 5].astype(np.int32)))
    return found, float(np.median(seconds))


def streamd_boxes(path: Path, images: list[np.ndarray], score_threshold: float, nms_threshold: float
                  ) -> tuple[list[tuple], dict]:
    """streamd's CPU detector (as the daemon builds it) on each image; and what it detected of the model."""
    detector = build_detector(ModelConfig(path=str(path), classes=read_metadata(path).names,
                                          score_threshold=score_threshold,
                                          nms_threshold=nms_threshold, max_detections=MAX_DETECTIONS))
    try:
        found = []
        for index, image in enumerate(images):
            detections = detector.submit(Frame("coco", index, 0.0, 0.0, image))[0].detections
            found.append((detections.boxes_xyxy, detections.scores, detections.class_ids))
        width, height = detector.input_size
        described = {"classes": list(detector.class_names), "input": [width, height],
                     "preprocessing": detector.convention.name, "decoder": type(detector.decoder).__name__}
    finally:
        detector.close()
    return found, described


def as_boxes(found: list[tuple]) -> list[Boxes]:
    return [Boxes(boxes.astype(np.float64), classes.astype(np.int64), scores.astype(np.float64))
            for boxes, scores, classes in found]


def compare(reference: list[tuple], low: list[tuple], same: list[tuple]) -> dict:
    """mAP of streamd's low-threshold boxes against the reference; one-to-one matching at the same threshold."""
    scored = mean_average_precision(as_boxes(low), as_boxes(reference))
    totals = {"ultralytics": 0, "streamd": 0, "matched": 0, "images_equal": 0, "min_iou": 1.0,
              "max_score_diff": 0.0}
    for expected, ours in zip(reference, same):
        found = match(expected, ours)
        for key in ("ultralytics", "streamd", "matched"):
            totals[key] += found[key]
        totals["images_equal"] += int(found["matched"] == found["ultralytics"] == found["streamd"])
        totals["min_iou"] = min(totals["min_iou"], found["min_iou"])
        totals["max_score_diff"] = max(totals["max_score_diff"], found["max_score_diff"])
    per_class: dict[str, int] = {}
    for _, _, classes in reference:
        for class_id in classes.tolist():
            per_class[str(class_id)] = per_class.get(str(class_id), 0) + 1
    return {"map50_95": round(scored["map50_95"], 4), "map50": round(scored["map50"], 4),
            "reference_boxes_by_class": per_class,
            "images_with_reference_boxes": sum(1 for _, _, classes in reference if len(classes)),
            "same_threshold": totals}


def write_reference(out: Path, model: Path, paths: list[Path], found: list[tuple], nms: float, count: int) -> None:
    """The model's sha256 and size, the settings, and for the first ``count`` images with boxes their file names
    and Ultralytics' boxes, scores and classes."""
    entries: dict[str, np.ndarray] = {
        "model_sha256": np.array(hashlib.sha256(model.read_bytes()).hexdigest()),
        "model_bytes": np.array(model.stat().st_size, np.int64),
        "score_threshold": np.array(REFERENCE_SCORE_THRESHOLD, np.float64), "nms_threshold": np.array(nms, np.float64),
        "max_detections": np.array(MAX_DETECTIONS, np.int32)}
    chosen = [(path, boxes) for path, boxes in zip(paths, found) if len(boxes[0])][:count]
    entries["images"] = np.array([path.name for path, _ in chosen])
    for path, (boxes, scores, classes) in chosen:
        entries[f"{path.name}__boxes"], entries[f"{path.name}__scores"] = boxes, scores
        entries[f"{path.name}__classes"] = classes
    np.savez_compressed(out, **entries)
    print(f"{out}: {out.stat().st_size} bytes, {len(chosen)} images")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the ONNX export")
    parser.add_argument("--weights", type=Path, help="the PyTorch weights it was exported from (a second reference)")
    parser.add_argument("--images", type=Path, default=SHARED / "calib" / "coco_val2017_100")
    parser.add_argument("--nms", type=float, default=NMS_THRESHOLD, help="NMS IoU, both sides")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="what the model is and where it comes from, kept in the JSON")
    parser.add_argument("--reference", type=Path,
                        help="also write Ultralytics' boxes (ONNX export) for the first images that have any, for "
                             "tests/yolox/test_trained_export.py")
    parser.add_argument("--reference-images", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    paths = sorted(args.images.glob("*.jpg"))
    images = [cv2.imread(str(path)) for path in paths]
    stand_in = use_ultralytics_nms()
    low, described = streamd_boxes(args.model, images, CANDIDATE_SCORE_THRESHOLD, args.nms)
    same, _ = streamd_boxes(args.model, images, REFERENCE_SCORE_THRESHOLD, args.nms)
    # (path, rect): the export; the PyTorch weights as Ultralytics predicts with them by default (each image
    # padded to a multiple of the stride) and padded to the export's square input.
    references = {"ultralytics_onnx": (args.model, True)}
    if args.weights:
        references["ultralytics_pytorch"] = (args.weights, True)
        references["ultralytics_pytorch_square_input"] = (args.weights, False)
    compared = {}
    for name, (path, rect) in references.items():
        found, seconds = reference_boxes(path, images, REFERENCE_SCORE_THRESHOLD, args.nms, rect)
        compared[name] = {"path": path.name, "rect": rect, **compare(found, low, same),
                          "reference_seconds_per_image_median": round(seconds, 4)}
        print(name, json.dumps(compared[name]))
        if name == "ultralytics_onnx" and args.reference:
            write_reference(args.reference, args.model, paths, found, args.nms, args.reference_images)
    import torch
    import ultralytics

    report = {**provenance(),
              "what": "a trained export through streamd's CPU detector against Ultralytics' own prediction, "
                      "mAP with the reference's detections as ground truth",
              "note": args.note, "ultralytics": ultralytics.__version__, "torch": torch.__version__,
              "nms": "Ultralytics' TorchNMS (torchvision does not import here)" if stand_in else "torchvision",
              "images": f"{args.images.name} ({len(images)} images)", "model": args.model.name, **described,
              "reference_score_threshold": REFERENCE_SCORE_THRESHOLD,
              "candidate_score_threshold": CANDIDATE_SCORE_THRESHOLD, "nms_threshold": args.nms,
              "max_detections": MAX_DETECTIONS, "references": compared}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

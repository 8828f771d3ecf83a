#!/usr/bin/env python3
"""streamd's CPU decoders against Ultralytics' own post-processing, on the same raw outputs of real exports.

For each export and each vtest.avi frame: Ultralytics' preprocessing (its predictor's own ``preprocess``:
letterbox, or stretch for RT-DETR, RGB, 0-1) gives the input; ONNX Runtime gives the raw output; Ultralytics' predictor
``postprocess`` (``DetectionPredictor``: ``non_max_suppression`` and ``scale_boxes``; ``RTDETRPredictor``
for RT-DETR) and streamd's decoder with its letterbox geometry each turn that same output into boxes in
frame pixels. A streamd box matches an Ultralytics box when the class is the same, the IoU is >= 0.999 (for
boxes of no area, as untrained heads give: the corners within 0.001 px) and the scores differ by at most 1e-5;
the matching is one to one. A frame that differs is checked for exactly tied scores within a class.
streamd's own preprocessing is compared with Ultralytics' input too (largest absolute difference).

Run with a Python that has ``ultralytics`` and ``torch`` (a separate environment: a tool here, never a
dependency of streamd); this checkout is put on the path:

    python benchmarks/ultralytics_parity.py --model yolov8n=v8.onnx --model yolo26n=e2e.onnx \\
        --model rtdetr-l=rtdetr.onnx --frames 200 --out benchmarks/results/MACHINE_ultralytics-parity.json \\
        --reference tests/yolox/data/ultralytics_reference.npz

``--reference`` also writes the first ``--reference-frames`` frames (raw outputs, and Ultralytics' boxes
computed on exactly those arrays) for the CI test (tests/yolox/test_ultralytics_reference.py); entries of
other exports already in that file stay. Anchor-free outputs are stored with class scores under half the
lowest threshold set to 0 (and the boxes of anchors left with no score), so that they compress (to about
25 KB a frame for YOLOv8n at 320); those frames are compared on the stored arrays (the candidates above
every threshold set are the same as in the raw output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from record import provenance  # noqa: E402

from streamd.yolox.decoders import layout_family, make_decoder  # noqa: E402
from streamd.yolox.layout import detect_layout  # noqa: E402
from streamd.yolox.metadata import read_metadata  # noqa: E402
from streamd.yolox.preprocess import Preprocessor, resolve_convention  # noqa: E402

IOU_MATCH = 0.999
CORNER_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-5
MAX_DETECTIONS = 300  # Ultralytics' max_det default


def read_frames(video: Path, start: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


class UltralyticsSide:
    """Ultralytics' preprocessing and predictor post-processing for one export (no model weights loaded)."""

    def __init__(self, family: str, names: tuple[str, ...], end2end: bool, input_size: tuple[int, int]) -> None:
        import torch
        from ultralytics.models.rtdetr import RTDETRPredictor
        from ultralytics.models.yolo.detect import DetectionPredictor

        self.rtdetr = family == "rtdetr"
        predictor_class = RTDETRPredictor if self.rtdetr else DetectionPredictor
        self.predictor = predictor_class(overrides={"conf": 0.25, "iou": 0.7, "max_det": MAX_DETECTIONS,
                                                    "verbose": False, "save": False})
        # What the predictor reads of an ONNX model it would have loaded (AutoBackend), without loading one.
        self.predictor.model = SimpleNamespace(names=dict(enumerate(names)), end2end=end2end, stride=32, fp16=False,
                                               format="onnx", pt=False, dynamic=False, imx=False)
        self.predictor.imgsz = (input_size[1], input_size[0])
        self.predictor.device = torch.device("cpu")
        self.predictor.batch = (["frame"],)

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """The predictor's own preprocess: its letterbox (RT-DETR: stretch), BGR -> RGB, 0-1."""
        return self.predictor.preprocess([frame]).numpy()

    def postprocess(self, raw: np.ndarray, network_input: np.ndarray, frame: np.ndarray, conf: float,
                    iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes xyxy in frame pixels, scores, classes); RT-DETR's boxes clipped to the frame as streamd's are."""
        import torch

        self.predictor.args.conf, self.predictor.args.iou = conf, iou
        result = self.predictor.postprocess(torch.from_numpy(raw.copy()), torch.from_numpy(network_input), [frame])[0]
        data = result.boxes.data.numpy()
        boxes = data[:, :4].copy()
        if self.rtdetr:  # RTDETRPredictor scales without clipping; streamd clips every box to the frame
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame.shape[1])
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame.shape[0])
        return boxes, data[:, 4].copy(), data[:, 5].astype(np.int32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    width = (np.minimum(a64[..., 2], b64[..., 2]) - np.maximum(a64[..., 0], b64[..., 0])).clip(0)
    height = (np.minimum(a64[..., 3], b64[..., 3]) - np.maximum(a64[..., 1], b64[..., 1])).clip(0)
    inter = width * height
    area_a = (a64[..., 2] - a64[..., 0]).clip(0) * (a64[..., 3] - a64[..., 1]).clip(0)
    area_b = (b64[..., 2] - b64[..., 0]).clip(0) * (b64[..., 3] - b64[..., 1]).clip(0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def same_place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU >= IOU_MATCH, or corners within CORNER_TOLERANCE pixels (a box of no area, or inverted x2 < x1, as
    an untrained head gives, has no IoU; both sides publish it as it is)."""
    corners = np.abs(a.astype(np.float64)[:, None] - b.astype(np.float64)[None]).max(axis=-1)
    return (iou_matrix(a, b) >= IOU_MATCH) | (corners <= CORNER_TOLERANCE)


def match(reference: tuple[np.ndarray, np.ndarray, np.ndarray], ours: tuple[np.ndarray, np.ndarray, np.ndarray]
          ) -> dict[str, float | int]:
    """A maximum one-to-one matching (augmenting paths, closest score first) among pairs of the same class and
    place (``same_place``) with scores within SCORE_TOLERANCE; the worst IoU and score difference of its pairs."""
    ref_boxes, ref_scores, ref_classes = reference
    our_boxes, our_scores, our_classes = ours
    matched, min_iou, max_score_diff = 0, 1.0, 0.0
    if len(ref_boxes) and len(our_boxes):
        ious = iou_matrix(ref_boxes, our_boxes)
        score_diff = np.abs(ref_scores[:, None].astype(np.float64) - our_scores[None])
        allowed = ((ref_classes[:, None] == our_classes[None]) & (score_diff <= SCORE_TOLERANCE)
                   & same_place(ref_boxes, our_boxes))
        owner = [-1] * len(our_boxes)

        def place(row: int, seen: set[int]) -> bool:
            columns = np.flatnonzero(allowed[row])
            for column in columns[np.argsort(score_diff[row, columns], kind="stable")]:
                if column not in seen:
                    seen.add(column)
                    if owner[column] < 0 or place(owner[column], seen):
                        owner[column] = row
                        return True
            return False

        # Equal scores first: boxes clipped to the same place (a frame's edge) then pair with their own.
        exact = allowed & (score_diff == 0)
        for row in range(len(ref_boxes)):
            for column in np.flatnonzero(exact[row]):
                if owner[column] < 0:
                    owner[column] = row
                    break
        for row in set(range(len(ref_boxes))) - set(owner):
            place(row, set())
        pairs = [(row, column) for column, row in enumerate(owner) if row >= 0]
        matched = len(pairs)
        proper = [(r, c) for r, c in pairs if ious[r, c] > 0]  # pairs of boxes with an area
        if proper:
            min_iou = min(float(ious[r, c]) for r, c in proper)
        if pairs:
            max_score_diff = max(float(score_diff[r, c]) for r, c in pairs)
    return {"ultralytics": len(ref_boxes), "streamd": len(our_boxes), "matched": matched,
            "min_iou": min_iou, "max_score_diff": max_score_diff}


def has_tied_scores(raw: np.ndarray, layout: str, conf: float) -> bool:
    """Whether two NMS candidates of one class have exactly the same score: which of them NMS visits first is
    then up to the sort (Ultralytics: torch's argsort, not stable; streamd: the lower anchor first)."""
    if layout not in ("ultralytics", "ultralytics-transposed"):
        return False
    table = raw[0] if layout == "ultralytics" else raw[0].T
    scores = table[4:].max(axis=0)
    candidates = scores > conf
    keys = np.stack((table[4:, candidates].argmax(axis=0).astype(np.float64), scores[candidates]), axis=1)
    return len(np.unique(keys, axis=0)) < len(keys)


def sparsify(raw: np.ndarray, layout: str, floor: float) -> np.ndarray:
    """Anchor-free outputs with class scores under ``floor`` set to 0, and the boxes of anchors left with none."""
    if layout not in ("ultralytics", "ultralytics-transposed"):
        return raw.copy()
    table = raw[0] if layout == "ultralytics" else raw[0].T
    table = table.copy()
    scores = table[4:]
    scores[scores < floor] = 0
    table[:4, scores.max(axis=0) == 0] = 0
    return (table if layout == "ultralytics" else table.T.copy())[None]


def run_model(name: str, path: Path, frames: list[np.ndarray], settings: list[tuple[float, float]],
              reference_frames: int, reference: dict[str, np.ndarray]) -> dict:
    metadata = read_metadata(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    height, width = model_input.shape[2], model_input.shape[3]
    names = metadata.names
    layout = detect_layout(metadata.outputs, width, height, len(names), family=metadata.family,
                           end2end=metadata.end2end)
    family = layout_family(layout)
    convention = resolve_convention("auto", family)
    ultralytics = UltralyticsSide(family, names, bool(metadata.end2end), (width, height))
    preprocessor = Preprocessor(convention, width, height)
    decoders = {setting: make_decoder(layout, width, height, len(names), setting[0], setting[1], MAX_DETECTIONS)
                for setting in settings}
    totals = {setting: {"frames": 0, "frames_equal": 0, "frames_differing_with_tied_scores": 0, "ultralytics": 0,
                        "streamd": 0, "matched": 0, "min_iou": 1.0, "max_score_diff": 0.0} for setting in settings}
    input_max_abs_diff = 0.0
    decode_seconds = {setting: [] for setting in settings}
    postprocess_seconds = {setting: [] for setting in settings}
    floor = min(conf for conf, _ in settings) / 2
    for index, frame in enumerate(frames):
        network_input = ultralytics.preprocess(frame)
        ours_input, geometry = preprocessor(frame)
        input_max_abs_diff = max(input_max_abs_diff, float(np.abs(ours_input - network_input).max()))
        raw = session.run(None, {model_input.name: network_input})[0]
        if index < reference_frames:
            raw = sparsify(raw, layout, floor)
            reference[f"{name}__raw__{index}"] = raw
            reference[f"{name}__frame_size__{index}"] = np.array(frame.shape[1::-1], np.int32)
        for setting in settings:
            conf, iou = setting
            started = time.perf_counter()
            expected = ultralytics.postprocess(raw, network_input, frame, conf, iou)
            postprocess_seconds[setting].append(time.perf_counter() - started)
            started = time.perf_counter()
            detections = decoders[setting].decode([raw])
            boxes = geometry.to_frame(detections.boxes_xyxy)
            decode_seconds[setting].append(time.perf_counter() - started)
            found = match(expected, (boxes, detections.scores, detections.class_ids))
            total = totals[setting]
            total["frames"] += 1
            equal = found["matched"] == found["ultralytics"] == found["streamd"]
            total["frames_equal"] += int(equal)
            if not equal:
                total["frames_differing_with_tied_scores"] += int(has_tied_scores(raw, layout, conf))
            for key in ("ultralytics", "streamd", "matched"):
                total[key] += found[key]
            total["min_iou"] = min(total["min_iou"], found["min_iou"])
            total["max_score_diff"] = max(total["max_score_diff"], found["max_score_diff"])
            if index < reference_frames:
                tag = f"{name}__conf{conf:g}_iou{iou:g}__{index}"
                reference[f"{tag}__boxes"], reference[f"{tag}__scores"], reference[f"{tag}__classes"] = expected
    report = {"path": path.name, "layout": layout, "family": family, "preprocessing": convention.name,
              "input": [width, height], "output": list(session.get_outputs()[0].shape), "classes": len(names),
              "input_max_abs_diff": input_max_abs_diff, "settings": []}
    for setting in settings:
        total = totals[setting]
        report["settings"].append({
            "score_threshold": setting[0], "nms_threshold": setting[1], **total,
            "boxes_per_frame": round(total["ultralytics"] / max(1, total["frames"]), 1),
            "streamd_decode_ms_median": round(1000 * float(np.median(decode_seconds[setting])), 3),
            "ultralytics_postprocess_ms_median": round(1000 * float(np.median(postprocess_seconds[setting])), 3),
        })
    reference[f"{name}__layout"] = np.array(layout)
    reference[f"{name}__classes"] = np.array(len(names), np.int32)
    reference[f"{name}__input"] = np.array([width, height], np.int32)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH of an ONNX export (repeat)")
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "vtest.avi")
    parser.add_argument("--start", type=int, default=500, help="first frame (the distilled models saw 0-499)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--setting", action="append", default=None,
                        help="CONF,IOU (repeat; default 0.01,0.7 and 0.01,0.45)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="also write the first frames' reference .npz here")
    parser.add_argument("--reference-frames", type=int, default=4)
    parser.add_argument("--note", default="", help="what the exports are (trained how), kept in the JSON")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    settings = [tuple(float(v) for v in s.split(",")) for s in (args.setting or ["0.01,0.7", "0.01,0.45"])]
    frames = read_frames(args.video, args.start, args.frames)
    reference: dict[str, np.ndarray] = {}
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        models[name] = run_model(name, Path(path), frames, settings,
                                 args.reference_frames if args.reference else 0, reference)
        print(name, json.dumps(models[name]["settings"]))
    import torch
    import ultralytics

    report = {**provenance(), "what": "streamd's CPU decoders against Ultralytics' predictor post-processing on "
                                      "the same raw outputs", "note": args.note,
              "ultralytics": ultralytics.__version__, "torch": torch.__version__,
              # non_max_suppression runs torchvision.ops.nms when torchvision is loaded, else its own TorchNMS.
              "torchvision": getattr(sys.modules.get("torchvision"), "__version__", None),
              "video": args.video.name, "first_frame": args.start, "frames": len(frames),
              "match": {"iou_at_least": IOU_MATCH, "or_corners_within_pixels": CORNER_TOLERANCE,
                        "score_within": SCORE_TOLERANCE, "same_class": True, "one_to_one": True},
              "max_detections": MAX_DETECTIONS, "models": models}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.reference:
        if args.reference.exists():  # other exports' entries (a run with another Ultralytics release) stay
            with np.load(args.reference) as kept:
                reference = {**{key: kept[key] for key in kept.files if key.split("__")[0] not in models},
                             **reference}
        np.savez_compressed(args.reference, **reference)
        print(f"{args.reference}: {args.reference.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

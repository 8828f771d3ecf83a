#!/usr/bin/env python3
"""Small Ultralytics detectors trained to copy yolox_nano, so that their raw outputs depend on the picture
(exports with random weights give the same scores everywhere). Test data for the decoders, not a product
model: a few minutes of CPU training from scratch gives boxes and scores worth decoding, not accuracy.

Run with a Python that has ``ultralytics`` installed (a separate environment: it is a tool here, never a
dependency of streamd) and streamd importable (this checkout is put on the path):

    python benchmarks/ultralytics_distil.py labels --out /tmp/distil
    python benchmarks/ultralytics_distil.py train --out /tmp/distil --arch yolov8n --hours 0.35

``labels`` writes a YOLO-format data set: yolox_nano's detections (streamd's CPU detector, score > 0.3)
on the calibration images and on every second frame of the first part of vtest.avi. ``train`` trains
``ARCH.yaml`` (random initial weights, nothing downloaded) at 320 px for at most ``--hours`` and exports
the last weights to ONNX (``end2end`` exports for YOLO26).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def write_labels(out: Path, video_frames: int, every: int, score_threshold: float) -> int:
    """The data set under ``out``; returns the number of images."""
    from streamd.config.coco import COCO_CLASSES
    from streamd.config.schema import ModelConfig
    from streamd.frame import Frame
    from streamd.inference.factory import build_detector

    images_dir, labels_dir = out / "images" / "train", out / "labels" / "train"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    detector = build_detector(ModelConfig(path=str(SHARED / "models" / "yolox_nano.onnx"), classes=COCO_CLASSES,
                                          score_threshold=score_threshold))
    pictures: list[tuple[str, object]] = []
    for path in sorted((SHARED / "calib" / "coco_val2017_100").glob("*.jpg")):
        pictures.append((path.stem, cv2.imread(str(path))))
    capture = cv2.VideoCapture(str(SHARED / "media" / "vtest.avi"))
    for index in range(video_frames):
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            pictures.append((f"vtest_{index:04d}", frame))
    capture.release()
    boxes_total = 0
    try:
        for name, image in pictures:
            height, width = image.shape[:2]
            detections = detector.submit(Frame("distil", 0, 0.0, 0.0, image))[0].detections
            lines = []
            for (x1, y1, x2, y2), class_id in zip(detections.boxes_xyxy, detections.class_ids):
                lines.append(f"{int(class_id)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                             f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
            boxes_total += len(lines)
            cv2.imwrite(str(images_dir / f"{name}.jpg"), image)
            (labels_dir / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    finally:
        detector.close()
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(COCO_CLASSES))
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/train\nval: images/train\nnames:\n{names}")
    print(f"{len(pictures)} images, {boxes_total} boxes -> {out}")
    return len(pictures)


def train(out: Path, arch: str, hours: float, imgsz: int, batch: int) -> Path:
    """Train ``arch`` from its YAML and export the last weights to ONNX; returns the ONNX path."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(f"{arch}.yaml")
    started = time.monotonic()
    model.train(data=str(out / "data.yaml"), imgsz=imgsz, epochs=1000, time=hours, batch=batch, workers=0,
                device="cpu", plots=False, val=False, amp=False, pretrained=False, project=str(out / "runs"),
                name=arch, exist_ok=True, seed=0, verbose=False)
    print(f"{arch}: trained for {time.monotonic() - started:.0f} s")
    weights = out / "runs" / arch / "weights" / "last.pt"
    options = {"end2end": True} if arch.startswith("yolo26") else {}
    exported = YOLO(str(weights)).export(format="onnx", imgsz=imgsz, opset=17, simplify=True, **options)
    return Path(exported)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("labels", "train"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="yolov8n", help="an Ultralytics model YAML name without .yaml")
    parser.add_argument("--hours", type=float, default=0.35, help="training time limit")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--video-frames", type=int, default=500, help="vtest.avi frames the labels come from")
    parser.add_argument("--every", type=int, default=2, help="every n-th of those frames")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.step == "labels":
        write_labels(args.out, args.video_frames, args.every, args.score_threshold)
    else:
        print(train(args.out, args.arch, args.hours, args.imgsz, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Raw outputs of the Ultralytics test exports on vtest.avi frames, for the GPU decoders' equality test
(tests/gpu/test_postprocess_families.py reads the file named by STREAMD_ULTRALYTICS_RAW):

    python benchmarks/ultralytics_raw.py --frames 4 --out raw.npz

One array per export, [frames, ...] as the model wrote them (ONNX Runtime on the CPU, Ultralytics'
preprocessing: RGB 0-1, centred letterbox).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamd.yolox.preprocess import ULTRALYTICS, Preprocessor  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXPORTS = ("yolov8n", "yolo26n_end2end")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(SHARED / "models" / "ultralytics"))
    parser.add_argument("--video", default=str(SHARED / "media" / "vtest.avi"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    capture = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
        for _ in range(50):  # frames a few seconds apart
            capture.grab()
    outputs = {}
    for name in EXPORTS:
        session = ort.InferenceSession(str(Path(args.models) / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        model_input = session.get_inputs()[0]
        height, width = model_input.shape[2], model_input.shape[3]
        preprocessor = Preprocessor(ULTRALYTICS, width, height)
        outputs[name] = np.concatenate([session.run(None, {model_input.name: preprocessor(frame)[0]})[0]
                                        for frame in frames])
        print(f"{name}: {outputs[name].shape}")
    np.savez_compressed(args.out, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Detection fidelity of NVDEC decoding: vtest re-encoded to H.264, decoded by
NVDEC (NV12 on the GPU, letterboxed by the batched kernel) and by OpenCV/FFmpeg (BGR on the host), both
through the same BatchGpuDetector and stand-in engine. The OpenCV run is the reference; fidelity is
mAP@0.5:0.95 of the NVDEC detections against it (``streamd.evaluation.detection_map``) and must be
>= 0.95. ``STREAMD_GPU_REPORT_DIR``: also write ``nvdec_fidelity.json`` there.

Needs PyNvVideoCodec, torch and ``STREAMD_H264_VIDEO``; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.config.schema import SourceConfig
from streamd.evaluation.detection_map import Boxes, mean_average_precision
from streamd.frame import Frame
from streamd.yolox.preprocess import YOLOX
from tests.support import YOLOX_NANO, require_shared

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
              for name in ("PyNvVideoCodec", "torch")]
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")
FRAMES = 240  # decoded by each; every second one is scored (the 30 fps test file repeats frames)
STRIDE = 2
BATCH = 8
MIN_FIDELITY = 0.95


def detect_all(detector, frames: list[Frame]) -> list:
    results = []
    for start in range(0, len(frames), BATCH):
        results.extend(detector.submit_batch(frames[start:start + BATCH]))
    results.extend(detector.drain())
    assert [r.frame for r in results] == frames
    return [r.detections for r in results]


def boxes(detections, with_scores: bool) -> Boxes:
    return Boxes(detections.boxes_xyxy.astype(np.float64), detections.class_ids.astype(np.int64),
                 detections.scores.astype(np.float64) if with_scores else None)


def test_nvdec_detections_match_opencv_decode() -> None:
    require_shared(YOLOX_NANO)
    if not VIDEO or not Path(VIDEO).is_file():
        pytest.skip("set STREAMD_H264_VIDEO to an H.264 file")
    from streamd.gpu.batch_detector import BatchGpuDetector  # noqa: PLC0415
    from streamd.sources.nvdec import NvdecReader  # noqa: PLC0415
    from tests.gpu.standin_engine import TorchGraphEngine  # noqa: PLC0415

    capture = cv2.VideoCapture(VIDEO)
    host_images = []
    for index in range(FRAMES):
        ok, image = capture.read()
        if not ok:
            break
        if index % STRIDE == 0:
            host_images.append(image)
    capture.release()
    detector = BatchGpuDetector(TorchGraphEngine(YOLOX_NANO, max_batch=BATCH), YOLOX, 80, 0.3, 0.45,
                                max_batch=BATCH)
    reader = NvdecReader(SourceConfig("fidelity", "file", VIDEO, decoder="nvdec"), pool_surfaces=2 * BATCH + 4)
    try:
        reference = detect_all(detector, [Frame("cv", i, 0.0, 0.0, image) for i, image in enumerate(host_images)])
        reader.open()
        nvdec_detections = []
        batch: list[Frame] = []
        index = 0
        while len(nvdec_detections) + len(batch) < len(host_images):
            item = reader.read()
            assert item is not None, f"NVDEC ended after {index} pictures"
            if index % STRIDE == 0:
                batch.append(Frame("nvdec", index, 0.0, 0.0, item[0]))
            else:
                item[0].release()
            index += 1
            if len(batch) == BATCH or len(nvdec_detections) + len(batch) == len(host_images):
                results = detector.submit_batch(batch) + detector.drain()
                nvdec_detections.extend(r.detections for r in results)
                for frame in batch:
                    frame.image.release()
                batch = []
    finally:
        reader.close()
        detector.close()
    scores = mean_average_precision([boxes(d, True) for d in nvdec_detections],
                                    [boxes(d, False) for d in reference])
    report = {"video": VIDEO, "frames_scored": len(reference), "stride": STRIDE,
              "detections_opencv": int(sum(len(d) for d in reference)),
              "detections_nvdec": int(sum(len(d) for d in nvdec_detections)),
              "fidelity_map50_95": scores["map50_95"], "fidelity_map50": scores["map50"],
              "classes": scores.get("classes")}
    print(f"NVDEC vs OpenCV decode: {json.dumps(report)}")
    if os.environ.get("STREAMD_GPU_REPORT_DIR"):
        Path(os.environ["STREAMD_GPU_REPORT_DIR"], "nvdec_fidelity.json").write_text(json.dumps(report, indent=1))
    assert report["detections_opencv"] > 0
    assert scores["map50_95"] >= MIN_FIDELITY, report

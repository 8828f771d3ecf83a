"""BatchGpuDetector with two batches in flight: results one call late (the rest from drain), in
submission order, identical to the synchronous detector (one slot) on the same frames; the idle rule
returns a call's own results when calls come far apart."""

from __future__ import annotations

import importlib.util
import time

import cv2
import numpy as np
import pytest

from streamd.frame import Frame
from streamd.yolox.preprocess import YOLOX
from tests.support import VTEST, YOLOX_NANO, require_shared

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="the stand-in engine needs torch")
BATCHES, MAX_BATCH = 12, 6


def vtest_batches() -> list[list[Frame]]:
    """BATCHES batches of 1..MAX_BATCH frames of two sizes (sources s0.., frame indices per source)."""
    capture = cv2.VideoCapture(str(VTEST))
    batches, index = [], 0
    for number in range(BATCHES):
        size = 1 + number % MAX_BATCH
        batch = []
        for position in range(size):
            ok, image = capture.read()
            assert ok
            if position % 2:
                image = cv2.resize(image, (1280, 720))
            batch.append(Frame(f"s{position}", index, 0.0, 0.0, image))
            index += 1
        batches.append(batch)
    capture.release()
    return batches


def detector(in_flight: int, idle_factor: float = 0.0):
    from streamd.gpu.batch_detector import BatchGpuDetector  # noqa: PLC0415
    from tests.gpu.standin_engine import TorchGraphEngine  # noqa: PLC0415

    return BatchGpuDetector(TorchGraphEngine(YOLOX_NANO, max_batch=MAX_BATCH), YOLOX, 80, 0.3, 0.45,
                            max_batch=MAX_BATCH, in_flight=in_flight, idle_factor=idle_factor)


def test_pipelined_batches_equal_synchronous_ones() -> None:
    require_shared(YOLOX_NANO, VTEST)
    batches = vtest_batches()
    frames = [frame for batch in batches for frame in batch]
    synchronous, pipelined = detector(in_flight=1), detector(in_flight=2)
    try:
        expected = []
        for batch in batches:
            expected.extend(synchronous.submit_batch(batch))
            assert synchronous.pending == 0
        late = []
        returned_per_call = []
        for batch in batches:
            results = pipelined.submit_batch(batch)
            returned_per_call.append(len(results))
            late.extend(results)
            assert pipelined.pending == 1  # this call's batch stays in flight (idle rule off)
        late.extend(pipelined.drain())
        assert pipelined.pending == 0
        # Results come one call late: call k returns batch k-1's frames.
        assert returned_per_call == [0] + [len(batch) for batch in batches[:-1]]
        assert [r.frame for r in expected] == frames
        assert [r.frame for r in late] == frames
        total = 0
        for want, have in zip(expected, late):
            assert np.array_equal(want.detections.class_ids, have.detections.class_ids)
            assert np.array_equal(want.detections.boxes_xyxy, have.detections.boxes_xyxy)
            assert np.array_equal(want.detections.scores, have.detections.scores)
            total += len(have.detections)
        assert total > 0
    finally:
        synchronous.close()
        pipelined.close()


def test_calls_far_apart_get_their_own_results() -> None:
    """Idle rule: a call that comes more than idle_factor batch latencies after the last returns its own
    batch's results at once (live, lightly loaded sources must not wait for the next batch)."""
    require_shared(YOLOX_NANO, VTEST)
    batches = vtest_batches()[:4]
    pipelined = detector(in_flight=2, idle_factor=4.0)
    try:
        pipelined.warm_up([len(batch) for batch in batches])
        for batch in batches:
            time.sleep(0.1)  # far more than 4 x a few ms of batch latency
            results = pipelined.submit_batch(batch)
            assert [r.frame for r in results] == batch
            assert pipelined.pending == 0
    finally:
        pipelined.close()

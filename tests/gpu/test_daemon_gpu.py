"""The daemon on a real GPU: capture (frames copied into pinned pool buffers on the capture thread)
-> GpuDetector (double-buffered, with the torch STAND-IN engine in place of TensorRT) -> ZeroMQ,
compared message by message with the same daemon on ONNX Runtime on the CPU."""

from __future__ import annotations

import statistics
import threading

import numpy as np
import pytest

from streamd.config import parse_config
from streamd.daemon import service as service_module
from streamd.daemon.service import Service
from tests.support import COCO_CLASSES, VTEST, YOLOX_NANO, require_shared

FRAMES = 120


def config(pace: str, frames: int):
    return parse_config({
        "sources": [{"id": "street", "kind": "file", "url": str(VTEST), "pace": pace, "max_frames": frames}],
        "model": {"path": str(YOLOX_NANO), "classes": str(COCO_CLASSES)},
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
    })


def gpu_detectors(model):
    from streamd.gpu.detector import GpuDetector  # noqa: PLC0415
    from streamd.yolox.preprocess import CONVENTIONS  # noqa: PLC0415
    from tests.gpu.standin_engine import TorchGraphEngine  # noqa: PLC0415

    detector = GpuDetector(TorchGraphEngine(model.path), CONVENTIONS[model.preprocessing], len(model.classes),
                           model.score_threshold, model.nms_threshold, max_detections=model.max_detections,
                           model_id="yolox_nano", class_names=model.classes)
    detector.warm_up()  # as build_gpu_detector does
    return [detector]


def run(service: Service, frames: int) -> tuple[list[dict], list[float]]:
    from streamd.publish.subscriber import Subscriber  # noqa: PLC0415

    ages: list[float] = []
    service.on_result = lambda result, age: ages.append(age)
    service.start_detector()
    messages: list[dict] = []
    with Subscriber(service.publisher_endpoint()) as subscriber:
        assert service.wait_for_subscriber(5.0)
        reader = threading.Thread(target=lambda: messages.extend(subscriber.messages(idle_timeout_seconds=5.0)))
        reader.start()
        service.start_sources()
        assert service.pipeline is not None and service.pipeline.finished.wait(120)
        reader.join(30)
    return messages, ages


@pytest.fixture
def shared_data():
    pytest.importorskip("zmq")
    require_shared(YOLOX_NANO, VTEST, COCO_CLASSES)


def test_gpu_daemon_matches_cpu_daemon(monkeypatch, shared_data) -> None:
    cpu_service = Service(config("fast", FRAMES))
    try:
        cpu_messages, _ = run(cpu_service, FRAMES)
    finally:
        cpu_service.stop()
    monkeypatch.setattr(service_module, "build_detectors", gpu_detectors)
    gpu_service = Service(config("fast", FRAMES))
    try:
        gpu_messages, _ = run(gpu_service, FRAMES)
        (pool,) = gpu_service.frame_pools
        assert pool.leased == 0  # every pinned frame buffer came back
        inference = gpu_service.registry.get_sample_value("streamd_stage_seconds_count",
                                                          {"source": "street", "stage": "inference"})
        assert inference == FRAMES
    finally:
        gpu_service.stop()
    assert [m["frame_index"] for m in gpu_messages] == list(range(FRAMES))
    assert [m["frame_index"] for m in cpu_messages] == list(range(FRAMES))
    for cpu, gpu in zip(cpu_messages, gpu_messages):
        cpu_found = sorted((d["label"], d["box"]) for d in cpu["detections"])
        gpu_found = sorted((d["label"], d["box"]) for d in gpu["detections"])
        assert [label for label, _ in gpu_found] == [label for label, _ in cpu_found], cpu["frame_index"]
        if cpu_found:
            np.testing.assert_allclose([box for _, box in gpu_found], [box for _, box in cpu_found], atol=1.0)


def test_gpu_daemon_frame_age_paced(monkeypatch, shared_data) -> None:
    """Frame age at publish with the file paced at 10 fps (printed; speed is not asserted)."""
    monkeypatch.setattr(service_module, "build_detectors", gpu_detectors)
    service = Service(config("native", 50))
    try:
        messages, ages = run(service, 50)
        inference = service.registry.get_sample_value("streamd_stage_seconds_sum",
                                                      {"source": "street", "stage": "inference"}) / len(ages)
    finally:
        service.stop()
    assert len(messages) == 50
    ages_ms = sorted(a * 1e3 for a in ages)
    print(f"GPU daemon, 10 fps: frame age p50 {statistics.median(ages_ms):.2f} ms, "
          f"p99 {ages_ms[int(0.99 * (len(ages_ms) - 1))]:.2f} ms, max {ages_ms[-1]:.2f} ms; "
          f"mean inference stage {inference * 1e3:.2f} ms")

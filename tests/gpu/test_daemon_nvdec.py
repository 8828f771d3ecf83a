"""The whole daemon on a GPU with NVDEC sources: Service -> nvdec preflight -> NVDEC capture (frames stay
in device memory) + an OpenCV source (pinned host frames) -> batch collector -> pipelined BatchGpuDetector
(torch STAND-IN engine in place of TensorRT, built by build_gpu_detector) -> ZeroMQ subscriber. On
``model.device`` 0, and 1 where a second GPU is visible; a device that does not exist is a start-up error.

Needs PyNvVideoCodec, pyzmq and ``STREAMD_H264_VIDEO`` (an H.264 file); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.daemon import service as service_module
from streamd.daemon.service import Service
from streamd.errors import BackendError, SourceError
from tests.support import COCO_CLASSES, YOLOX_NANO, require_shared

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
              for name in ("PyNvVideoCodec", "zmq", "torch")]
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")
FRAMES = 60
MAX_BATCH = 4


@pytest.fixture
def video() -> str:
    require_shared(YOLOX_NANO, COCO_CLASSES)
    if not VIDEO or not Path(VIDEO).is_file():
        pytest.skip("set STREAMD_H264_VIDEO to an H.264 file")
    return VIDEO


def config(video: str, device: int = 0, decoders=("nvdec", "nvdec", "opencv")):
    return parse_config({
        "sources": [{"id": f"cam{i}", "kind": "file", "url": video, "pace": "fast", "max_frames": FRAMES,
                     "decoder": decoder} for i, decoder in enumerate(decoders)],
        "model": {"path": str(YOLOX_NANO), "classes": str(COCO_CLASSES), "backend": "tensorrt",
                  "max_batch": MAX_BATCH, "layout": "yolox", "device": device},
        "publish": {"endpoint": "tcp://127.0.0.1:*", "send_hwm": 100000},
        "metrics": {"enabled": False},
    })


def standin_detectors(model):
    from streamd.bench.standin import open_standin_engine  # noqa: PLC0415
    from streamd.gpu.build import build_gpu_detector  # noqa: PLC0415

    return [build_gpu_detector(model, "yolox_nano", engine_opener=open_standin_engine)]


def pointer_device(ptr: int) -> int:
    from streamd.cuda import runtime  # noqa: PLC0415

    cudart, _, _ = runtime.bindings()
    return int(runtime.check(cudart.cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes").device)


def run(service: Service) -> tuple[list[dict], list]:
    from streamd.publish.subscriber import Subscriber  # noqa: PLC0415

    images = []
    service.on_result = lambda result, age: images.append(result.frame.image)
    service.start_detector()
    messages: list[dict] = []
    with Subscriber(service.publisher_endpoint()) as subscriber:
        assert service.wait_for_subscriber(5.0)
        reader = threading.Thread(target=lambda: messages.extend(subscriber.messages(idle_timeout_seconds=5.0)))
        reader.start()
        service.start_sources()
        assert service.pipeline is not None and service.pipeline.finished.wait(120)
        reader.join(30)
    return messages, images


def gpu_count() -> int:
    from streamd.cuda import runtime  # noqa: PLC0415

    return runtime.device_count()


@pytest.mark.parametrize("device", [0, 1])
def test_daemon_with_nvdec_sources_batches_on_the_gpu(monkeypatch, video, device) -> None:
    if device >= gpu_count():
        pytest.skip(f"needs {device + 1} GPUs")
    from streamd.sources import nvdec  # noqa: PLC0415
    from streamd.sources.device_image import DeviceNV12  # noqa: PLC0415

    readers = []

    def recording_factory(device_number):
        make = nvdec.reader_factory(device_number)

        def build(source_config):
            reader = make(source_config)
            readers.append(reader)
            return reader

        return build

    monkeypatch.setattr(service_module, "build_detectors", standin_detectors)
    monkeypatch.setattr(service_module, "nvdec_reader_factory", recording_factory)
    service = Service(config(video, device))
    try:
        messages, images = run(service)
        (detector,) = service.detectors
        assert type(detector).__name__ == "BatchGpuDetector" and detector.device == device
        assert pointer_device(detector._input.ptr) == device
        assert detector.pending == 0
        batch_count = service.registry.get_sample_value("streamd_batch_size_count")
        batch_sum = service.registry.get_sample_value("streamd_batch_size_sum")
        inference = {s: service.registry.get_sample_value("streamd_stage_seconds_count",
                                                          {"source": s, "stage": "inference"})
                     for s in ("cam0", "cam1", "cam2")}
    finally:
        service.stop()
    by_source = defaultdict(list)
    for message in messages:
        by_source[message["source"]].append(message)
    for source in ("cam0", "cam1", "cam2"):
        assert [m["frame_index"] for m in by_source[source]] == list(range(FRAMES)), source
        assert inference[source] == FRAMES
    assert batch_sum == 3 * FRAMES and batch_sum / batch_count > 1.5  # frames of several sources per batch
    device_images = [image for image in images if isinstance(image, DeviceNV12)]
    assert len(device_images) == 2 * FRAMES and {image.device for image in device_images} == {device}
    assert all(image.released for image in device_images)
    nvdec_readers = [r for r in readers if isinstance(r, nvdec.NvdecReader)]
    assert nvdec_readers and all(r.pool.leased == 0 for r in nvdec_readers)  # every surface came back
    found = {s: sum(len(m["detections"]) for m in by_source[s]) for s in by_source}
    # NVDEC and OpenCV decode the same file: about the same number of detections (fidelity: test_nvdec_fidelity).
    assert found["cam2"] > 0 and abs(found["cam0"] - found["cam2"]) <= 0.1 * found["cam2"]
    assert abs(found["cam0"] - found["cam1"]) <= max(2, 0.01 * found["cam1"])  # same file, same pixels
    print(f"device {device}: {len(messages)} messages, batch mean {batch_sum / batch_count:.2f}, detections {found}")


def test_a_device_that_does_not_exist_is_a_start_up_error(monkeypatch, video) -> None:
    missing = gpu_count()
    monkeypatch.setattr(service_module, "build_detectors", standin_detectors)
    service = Service(config(video, missing))
    with pytest.raises(SourceError, match=f"model.device = {missing}"):
        service.start_detector()  # the nvdec preflight, before the model loads
    service.stop()
    service = Service(config(video, missing, decoders=("opencv",)))
    with pytest.raises(BackendError, match=f"model.device = {missing}"):
        service.start_detector()
    service.stop()

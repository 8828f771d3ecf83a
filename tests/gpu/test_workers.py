"""Worker processes on the GPU path: one service with `model.device = [0, 0]` (one GPU standing in for
two device ids) runs two workers, each its own CUDA context with NVDEC sources and the torch STAND-IN
engine in TensorRT's place; every source publishes on the one endpoint, SIGTERM stops all in < 5 s.

Needs PyNvVideoCodec, pyzmq, torch and ``STREAMD_H264_VIDEO`` (an H.264 file); skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from streamd.publish.subscriber import Subscriber
from tests.support import YOLOX_NANO, free_port, http_get, require_shared

pytestmark = [pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs {name}")
              for name in ("PyNvVideoCodec", "zmq", "torch")]
VIDEO = os.environ.get("STREAMD_H264_VIDEO", "")
READY_SECONDS = 240.0


def test_two_device_ids_two_workers_one_endpoint(daemon_factory) -> None:  # noqa: ANN001
    require_shared(YOLOX_NANO)
    if not VIDEO or not Path(VIDEO).is_file():
        pytest.skip("set STREAMD_H264_VIDEO to an H.264 file")
    publish_port, metrics_port = free_port(), free_port()
    sources = "".join(f'[[sources]]\nid = "cam{i}"\nkind = "file"\nurl = "{VIDEO}"\nloop = true\ndecoder = "nvdec"\n'
                      for i in range(4))
    daemon = daemon_factory(sources + f"""
[model]
path = "{YOLOX_NANO}"
backend = "tensorrt"
layout = "yolox"
max_batch = 4
device = [0, 0]
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 10000
[metrics]
bind = "127.0.0.1:{metrics_port}"
[daemon]
workers = "auto"
""", env={"STREAMD_BENCH_STANDIN_ENGINE": "1"}, name="gpu-workers")
    deadline = time.monotonic() + READY_SECONDS
    while True:
        assert daemon.process.poll() is None, daemon.log()[-3000:]
        try:
            status, body = http_get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
        except OSError:
            status, body = 0, "{}"
        if status == 200 and all(state == "streaming" for state in json.loads(body)["sources"].values()):
            break
        assert time.monotonic() < deadline, daemon.log()[-3000:]
        time.sleep(1.0)
    workers = json.loads(http_get(f"http://127.0.0.1:{metrics_port}/healthz")[1])["workers"]
    assert len(workers) == 2 and all(w["state"] == "up" for w in workers.values())  # auto: one per device id
    counts: dict[str, int] = {}
    with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
        deadline = time.monotonic() + 60
        while min((counts.get(f"cam{i}", 0) for i in range(4)), default=0) < 10:
            assert time.monotonic() < deadline, (counts, daemon.log()[-3000:])
            message = subscriber.receive(0.5)
            if message is not None:
                counts[message["source"]] = counts.get(message["source"], 0) + 1
    status, seconds = daemon.terminate()
    assert status == 0 and seconds < 5.0, daemon.log()[-3000:]

"""``streamd run`` on Ultralytics exports: the YOLOv8n export end to end with class names from its
metadata, and a model of an unknown layout refused at start-up naming its shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from streamd.publish.message import SCHEMA
from streamd.publish.subscriber import Subscriber
from tests.support import REPO, free_port, require_shared, wait_for_http
from tests.yolox.ultralytics_models import YOLOV8N, ultralytics_metadata, write_constant_model


def test_yolov8n_export_runs_end_to_end_with_names_from_its_metadata(daemon_factory) -> None:
    require_shared(YOLOV8N)
    publish_port, metrics_port = free_port(), free_port()
    # No model.classes and no names file: the names come from the export's metadata ('0'..'79' for a
    # model built from its YAML). Random weights score about 1.6e-4 at most: a threshold below that.
    daemon = daemon_factory(f"""
[[sources]]
id = "scene"
kind = "synthetic"
width = 640
height = 480
fps = 10
loop = true
[model]
path = "{YOLOV8N}"
score_threshold = 0.0001
max_detections = 20
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
[metrics]
bind = "127.0.0.1:{metrics_port}"
""")
    status, body = wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", deadline_seconds=60)
    assert status == 200, (body, daemon.log())
    with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
        messages = subscriber.collect(4.0)
    assert len(messages) >= 5, daemon.log()
    log = daemon.log()
    assert "layout ultralytics" in log and "preprocessing ultralytics" in log, log
    names = {str(i) for i in range(80)}
    detections = [d for m in messages for d in m["detections"]]
    assert detections, daemon.log()
    for message in messages:
        assert message["schema"] == SCHEMA and message["model"] == "yolov8n"
        assert message["frame_size"] == [640, 480]
    for detection in detections:
        assert detection["label"] in names
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 480
        assert 0.0001 < detection["score"] < 0.001


def test_an_unknown_layout_stops_the_start_naming_the_shape(tmp_path: Path) -> None:
    model = write_constant_model(tmp_path / "odd.onnx", np.zeros((1, 17, 5), np.float32), 64,
                                 ultralytics_metadata(3, 64, False))
    config = tmp_path / "odd.toml"
    config.write_text(f'[[sources]]\nid = "scene"\nkind = "synthetic"\nmax_frames = 5\n'
                      f'[model]\npath = "{model}"\n[metrics]\nenabled = false\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "layout" in line]
    assert len(lines) == 1 and "output0[1, 17, 5]" in lines[0] and "end2end" in lines[0], result.stderr

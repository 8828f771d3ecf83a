"""The documented exit statuses (docs/running.md) and backend choice: `streamd run` exits 1 when the model
cannot load or the pipeline fails (2 is kept for a bad config, tested in tests/config), and backend = "auto" runs
on ONNX Runtime where TensorRT is absent."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

from streamd import __version__
from streamd.config import parse_config
from streamd.daemon.sdnotify import SystemdNotifier
from tests.support import REPO, free_port, still_image_config


def test_run_exits_1_when_the_model_cannot_load(tmp_path: Path, tiny_image: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"this is not an ONNX model")
    (tmp_path / "broken.names").write_text("a\nb\nc\n")
    config = tmp_path / "broken.toml"
    config.write_text(still_image_config(model, tiny_image, free_port()))
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(model) in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_run_exits_1_when_the_pipeline_fails(tiny_model: Path, tiny_image: Path, monkeypatch, caplog) -> None:
    """The detector raises on the fourth frame: run_service (what `streamd run` returns) stops the
    daemon by itself with status 1 and logs why."""
    from streamd.daemon import service as service_module  # noqa: PLC0415

    real_build = service_module.build_detectors

    def build_failing_detectors(*args, **kwargs):
        detectors = real_build(*args, **kwargs)
        for detector in detectors:
            real_submit = detector.submit

            def submit(frame, real_submit=real_submit):
                if frame.index >= 3:
                    raise RuntimeError("inference exploded")
                return real_submit(frame)

            detector.submit = submit
        return detectors

    monkeypatch.setattr(service_module, "build_detectors", build_failing_detectors)
    config = parse_config({
        "sources": [{"id": "still", "kind": "image", "url": str(tiny_image), "loop": True, "fps": 20}],
        "model": {"path": str(tiny_model)},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
    })
    stop = threading.Event()
    statuses: list[int] = []
    runner = threading.Thread(target=lambda: statuses.append(service_module.run_service(config, stop,
                                                                                       SystemdNotifier({}))),
                              name="service-under-test", daemon=True)
    with caplog.at_level(logging.INFO):
        runner.start()
        runner.join(30)
        stop.set()
        runner.join(10)
    assert statuses == [1], "the daemon did not stop on its own with status 1"
    assert any("pipeline failed" in r.getMessage() and "inference exploded" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_backend_auto_runs_on_onnxruntime_without_tensorrt(tiny_model: Path, tiny_image: Path, monkeypatch,
                                                            caplog) -> None:
    from streamd.daemon.service import Service  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as where it is absent
    config = parse_config({
        "sources": [{"id": "still", "kind": "image", "url": str(tiny_image)}],  # one frame, then the end
        "model": {"path": str(tiny_model), "backend": "auto"},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
    })
    service = Service(config)
    with caplog.at_level(logging.INFO, logger="streamd"):
        try:
            service.start()
            assert service.pipeline is not None and service.pipeline.finished.wait(30)
        finally:
            service.stop()
    assert "backend 'auto' chose onnxruntime" in caplog.text
    info = service.registry.get_sample_value("streamd_build_info", {
        "version": __version__, "model": "tiny", "backend": "onnxruntime",
        "workers": str(len(service.detectors))})
    assert info == 1.0
    assert service.registry.get_sample_value("streamd_frames_processed_total", {"source": "still"}) == 1.0

"""Test helpers: the data in ../shared, free ports, a tiny YOLOX-layout model, daemon processes."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAMD_SHARED", REPO.parent / "shared"))
YOLOX_NANO = SHARED / "models" / "yolox_nano.onnx"
COCO_CLASSES = SHARED / "models" / "coco_classes.txt"
VTEST = SHARED / "media" / "vtest.avi"
DOG = SHARED / "media" / "dog.jpg"


# What STREAMD_REQUIRE (comma-separated) may name: a test that needs one of these fails instead of
# skipping when it is missing. CI sets it (.ci/run), so a broken CI image cannot pass by skipping.
REQUIREMENTS = {
    "shared": "the test data in ../shared (or STREAMD_SHARED)",
    "rtsp": "GStreamer's RTSP server under /usr/bin/python3 (.ci/apt-packages.txt)",
    "gstreamer": "GStreamer through PyGObject in streamd's own Python (the gstreamer extra; .ci/apt-packages.txt)",
    "systemd": "systemd-analyze (.ci/apt-packages.txt)",
    "int8": "INT8 calibration in streamd quantize (onnxruntime >= 1.24)",
    "prometheus": "prometheus and promtool (Debian package prometheus, .ci/apt-packages.txt)",
    "chromium": "headless Chromium (Debian package chromium, .ci/apt-packages.txt)",
    "mqtt": "the mosquitto broker (Debian package mosquitto, .ci/apt-packages.txt) and paho-mqtt (the mqtt extra)",
    "nats": "nats-server with JetStream (Debian package nats-server, .ci/apt-packages.txt) and nats-py (the nats "
            "extra)",
    "gxx": "g++ (Debian package g++, .ci/apt-packages.txt), for the host build of the GPU kernels (tests/gpu)",
}


def required() -> set[str]:
    """The names in STREAMD_REQUIRE; an unknown name is an error, so a typo cannot disable a check."""
    names = {name.strip() for name in os.environ.get("STREAMD_REQUIRE", "").split(",") if name.strip()}
    unknown = names - REQUIREMENTS.keys()
    if unknown:
        raise pytest.UsageError(f"STREAMD_REQUIRE names {', '.join(sorted(unknown))}; known: "
                                f"{', '.join(REQUIREMENTS)}")
    return names


def skip_unless_required(requirement: str, reason: str) -> None:
    """Skip with ``reason``, or fail with it when STREAMD_REQUIRE names ``requirement``."""
    if requirement not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {requirement!r}")
    if requirement in required():
        pytest.fail(f"{reason} (STREAMD_REQUIRE includes {requirement!r}: {REQUIREMENTS[requirement]})",
                    pytrace=False)
    pytest.skip(reason)


def require_shared(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        skip_unless_required("shared", f"needs the shared test data beside the repository (missing: "
                                       f"{', '.join(missing)}); set STREAMD_SHARED to its folder")


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for a daemon subprocess to bind.

    The daemon binds it later, so it cannot be held open until then (check-then-bind). A port from
    ``bind(port 0)`` lies in the kernel's ephemeral range, which every outgoing connection and every
    other test's ``bind(0)`` on this machine draws from meanwhile. So the port is drawn at random
    from below that range (where the kernel hands out nothing by itself), and checked by binding it
    without SO_REUSEADDR, retried until one is free."""
    low, _ = _ephemeral_port_range()
    candidates = random.Random().sample(range(max(1024, low - 12000), low), 200)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port found below the ephemeral range")


def write_tiny_yolox_model(path: Path, input_size: int = 64, num_classes: int = 3,
                           planted: dict[int, tuple[float, float, float, float, float, int]] | None = None) -> Path:
    """An ONNX model in the official YOLOX layout whose output is a constant table (plus 0 x input,
    so the input stays live): cells in ``planted`` get (x, y, log w, log h, score, class); all
    others score 0. Runs in microseconds, so tests can push thousands of frames."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    cells = sum((input_size // s) ** 2 for s in (8, 16, 32))
    table = np.zeros((1, cells, 5 + num_classes), np.float32)
    for cell, (x, y, log_w, log_h, score, class_id) in (planted or {}).items():
        table[0, cell, :4] = (x, y, log_w, log_h)
        table[0, cell, 4] = 1.0
        table[0, cell, 5 + class_id] = score
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, input_size, input_size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cells, 5 + num_classes])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def write_misfit_model(path: Path) -> Path:
    """A loadable ONNX model whose output ([1, 3]: a mean per channel) fits no YOLOX layout."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["output"], axes=[2, 3], keepdims=0)], "misfit",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


class DaemonProcess:
    """``python -m streamd run`` as a subprocess, its output captured to a file."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config_path)],
                                        stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0, signal_number: int = signal.SIGTERM) -> tuple[int, float]:
        """SIGTERM (or ``signal_number``); (exit status, seconds it took to exit)."""
        started = time.monotonic()
        self.process.send_signal(signal_number)
        status = self.process.wait(timeout)
        return status, time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for_http(url: str, deadline_seconds: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + deadline_seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return http_get(url, timeout=2.0)
        except OSError as error:
            last_error = error
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {deadline_seconds} s: {last_error}")


def still_image_config(model: Path, image: Path, publish_port: int) -> str:
    """A daemon config: one looping image source at 20 fps, the given model, metrics off."""
    return f"""
[[sources]]
id = "still"
kind = "image"
url = "{image}"
loop = true
fps = 20
[model]
path = "{model}"
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
[metrics]
enabled = false
"""

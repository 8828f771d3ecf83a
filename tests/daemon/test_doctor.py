"""`streamd doctor`: runs without a config on any machine, and picks the path from what it found."""

from __future__ import annotations

import json

from streamd.cli import main
from streamd.daemon.doctor import format_report, paths

ORIN = {"ordinal": 0, "name": "Orin", "kind": "integrated", "integrated": True, "can_map_host_memory": True,
        "concurrent_managed_access": False, "compute_capability": "8.7", "total_memory_bytes": 64 << 30}
H200 = {**ORIN, "name": "NVIDIA H200", "kind": "discrete", "integrated": False, "concurrent_managed_access": True,
        "compute_capability": "9.0"}


def _report(device: dict | None, tensorrt: str | None, jetson: dict, nvdec: bool = False) -> dict:
    gpu = {"count": 1, "devices": [device], "cuda": {"runtime": "12.6", "driver": "12.6"}} if device else \
        {"count": 0, "reason": "no CUDA device"}
    return {"machine": {"streamd": "0", "python": "3.10", "platform": "Linux"}, "gpu": gpu,
            "inference": {"tensorrt": tensorrt, "onnxruntime": "1.23"},
            "decoders": {"opencv": {"available": True, "version": "4.8", "ffmpeg": True, "gstreamer": True},
                         "nvdec": {"available": nvdec, "pynvvideocodec": "2.2"} if nvdec else {"available": False},
                         "jetson": jetson},
            "board_metrics": {"thermal_zones": ["gpu-thermal"], "power_rails": ["VDD_IN"], "gpu_load": "/x"}}


def test_jetson_takes_tensorrt_zero_copy_and_the_hardware_decoder() -> None:
    report = _report(ORIN, "10.3.0", {"available": True, "tegra": True, "decode": "nvv4l2decoder",
                                      "version": "GStreamer 1.20.3", "elements": {"nvv4l2decoder": True}})
    report["paths"] = chosen = paths(report, None)
    assert chosen["backend"] == "tensorrt"
    assert chosen["gpu_frames"].startswith("zero-copy")
    assert chosen["recommended_decoder"].startswith("jetson")
    text = format_report(report)
    assert "GPU 0: Orin, integrated, compute 8.7" in text and "TensorRT: 10.3.0" in text
    assert "decodes with nvv4l2decoder (Tegra)" in text and "thermal zones gpu-thermal" in text


def test_discrete_gpu_copies_frames_and_prefers_nvdec() -> None:
    report = _report(H200, "10.3.0", {"available": False, "reason": "no gi"}, nvdec=True)
    chosen = paths(report, None)
    assert chosen["gpu_frames"].startswith("copy") and chosen["recommended_decoder"].startswith("nvdec")


def test_no_gpu_runs_onnxruntime() -> None:
    chosen = paths(_report(None, None, {"available": False, "reason": "no gi"}), None)
    assert chosen["backend"] == "onnxruntime" and "gpu_frames" not in chosen
    without_tensorrt = paths(_report(H200, None, {"available": False, "reason": "no gi"}), None)
    assert without_tensorrt["backend"] == "onnxruntime" and without_tensorrt["gpu_frames"].startswith("copy")
    assert chosen["recommended_decoder"].startswith("opencv")


def test_cli_without_config(capsys) -> None:
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    for start in ("streamd ", "TensorRT:", "decoder opencv:", "decoder nvdec:", "decoder jetson:", "path: backend"):
        assert any(line.startswith(start) for line in text.splitlines()), (start, text)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"machine", "gpu", "inference", "decoders", "board_metrics", "paths"}

"""``streamd doctor``: what this machine offers streamd, and which path a config would take here.

No config is needed: without one it reports the machine and what the defaults would pick (``backend =
"auto"``, ``zero_copy = "auto"``); with ``--config`` it also says, per source, which decoder runs it. It
never fails for a missing piece (a machine without a GPU is a normal answer); it only reports. Every probe
is guarded, so one broken package shows as its error line, not as a crash.
"""

from __future__ import annotations

import importlib
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamd import __version__
from streamd.config.schema import Config

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def _guarded(probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return probe()
    except Exception as error:  # noqa: BLE001 - doctor reports every failure instead of stopping at it
        return {"error": f"{type(error).__name__}: {error}"}


def _version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - ImportError, or a package whose native library is missing
        return None
    return str(getattr(module, "__version__", "?"))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"streamd": __version__, "python": platform.python_version(),
                            "platform": f"{platform.system()} {platform.release()} {platform.machine()}"}
    if TEGRA_RELEASE.exists():
        first = TEGRA_RELEASE.read_text(errors="replace").splitlines()[:1]
        info["l4t"] = first[0].strip("# ").strip() if first else "present"
    return info


def gpus() -> dict[str, Any]:
    try:
        from streamd.cuda import runtime  # noqa: PLC0415
        from streamd.cuda.device_info import cuda_versions, device_info  # noqa: PLC0415

        count = runtime.device_count()
    except Exception as error:  # noqa: BLE001 - no cuda-python, or no driver
        return {"count": 0, "reason": str(error)}
    result: dict[str, Any] = {"count": count, "cuda_python": _version("cuda.bindings")}
    if count == 0:
        result["reason"] = "cuda-python imports but the driver reports no CUDA device"
        return result
    result["cuda"] = _guarded(cuda_versions)
    result["devices"] = [_guarded(lambda index=index: device_info(index).as_dict()) for index in range(count)]
    return result


def inference() -> dict[str, Any]:
    result: dict[str, Any] = {"tensorrt": _version("tensorrt"), "onnxruntime": _version("onnxruntime")}
    try:
        import onnxruntime  # noqa: PLC0415

        result["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    except Exception:  # noqa: BLE001, S110 - reported as the version None above
        pass
    return result


def decoders() -> dict[str, Any]:
    result: dict[str, Any] = {}

    def opencv() -> dict[str, Any]:
        import cv2  # noqa: PLC0415

        build = cv2.getBuildInformation()
        backends = {name: any(line.strip().startswith(f"{name}:") and "YES" in line for line in build.splitlines())
                    for name in ("FFMPEG", "GStreamer")}
        return {"available": True, "version": cv2.__version__, "ffmpeg": backends["FFMPEG"],
                "gstreamer": backends["GStreamer"]}

    def nvdec() -> dict[str, Any]:
        version = _version("PyNvVideoCodec")
        if version is None:
            return {"available": False, "reason": "PyNvVideoCodec does not import (pip install 'streamd[nvdec]')"}
        return {"available": True, "pynvvideocodec": version}

    def jetson() -> dict[str, Any]:
        from streamd.sources.gstreamer import describe  # noqa: PLC0415

        return describe()

    result["opencv"] = _guarded(opencv)
    result["nvdec"] = _guarded(nvdec)
    result["jetson"] = _guarded(jetson)
    return result


def board_metrics() -> dict[str, Any]:
    from streamd.metrics.jetson import discover  # noqa: PLC0415

    files = discover()
    return {"thermal_zones": sorted(files.thermal_zones), "power_rails": [rail.name for rail in files.rails],
            "gpu_load": str(files.gpu_load) if files.gpu_load else None}


def paths(report: dict[str, Any], config: Config | None) -> dict[str, Any]:
    """Which path the daemon takes here: backend, GPU memory mode, and decoder per source."""
    gpu = report["gpu"]
    devices = gpu.get("devices") or []
    model_backend = config.model.backend if config else "auto"
    device_index = config.model.device if config else 0
    zero_copy_mode = config.model.zero_copy if config else "auto"
    tensorrt = report["inference"]["tensorrt"] is not None
    if model_backend == "auto":
        backend = "tensorrt" if tensorrt and gpu.get("count", 0) > 0 else "onnxruntime"
    else:
        backend = model_backend
    result: dict[str, Any] = {"backend": backend, "backend_setting": model_backend}
    device = devices[device_index] if device_index < len(devices) and "error" not in devices[device_index] else None
    if device is not None:  # what the GPU path does with frames here, whether or not the backend is TensorRT
        if zero_copy_mode == "on":
            zero_copy = bool(device["can_map_host_memory"])
        else:
            zero_copy = zero_copy_mode == "auto" and device["integrated"] and device["can_map_host_memory"]
        result["gpu_frames"] = ("zero-copy: frames read in place from mapped host memory" if zero_copy
                                else "copy: frames uploaded from pinned host memory")
        result["zero_copy_setting"] = zero_copy_mode
    elif backend == "tensorrt":
        result["gpu_frames"] = f"no CUDA device {device_index}: the GPU path cannot start here"
    decoders_found = report["decoders"]
    jetson = decoders_found.get("jetson", {})
    if jetson.get("available") and jetson.get("tegra") and jetson.get("decode") == "nvv4l2decoder":
        recommended = "jetson (GStreamer, nvv4l2decoder: the Jetson's hardware decoder)"
    elif decoders_found.get("nvdec", {}).get("available") and gpu.get("count", 0) > 0:
        recommended = "nvdec (PyNvVideoCodec; needs the GPU path with model.max_batch >= 2)"
    else:
        recommended = "opencv (FFmpeg on the CPU)"
    result["recommended_decoder"] = recommended
    if config is not None:
        result["sources"] = {source.id: source.decoder if source.kind in ("file", "rtsp") else source.kind
                             for source in config.sources}
    return result


def collect(config: Config | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": _guarded(machine), "gpu": _guarded(gpus), "inference": _guarded(inference),
                              "decoders": _guarded(decoders), "board_metrics": _guarded(board_metrics)}
    report["gpu"].setdefault("count", 0)
    report["inference"].setdefault("tensorrt", None)
    report["paths"] = _guarded(lambda: paths(report, config))
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines (``--json`` prints the dictionary instead)."""
    lines = []
    machine_info = report["machine"]
    lines.append(f"streamd {machine_info.get('streamd')} on Python {machine_info.get('python')}, "
                 f"{machine_info.get('platform')}" + (f", {machine_info['l4t']}" if "l4t" in machine_info else ""))
    gpu = report["gpu"]
    if gpu.get("count"):
        cuda = gpu.get("cuda", {})
        lines.append(f"CUDA: runtime {cuda.get('runtime')}, driver supports {cuda.get('driver')}, "
                     f"cuda-python {gpu.get('cuda_python')}")
        for device in gpu.get("devices", []):
            if "error" in device:
                lines.append(f"GPU: {device['error']}")
                continue
            memory_gib = device["total_memory_bytes"] / 2**30
            mapping = "yes" if device["can_map_host_memory"] else "no"
            managed = "yes" if device["concurrent_managed_access"] else "no"
            lines.append(f"GPU {device['ordinal']}: {device['name']}, {device['kind']}, compute "
                         f"{device['compute_capability']}, {memory_gib:.1f} GiB, can map host memory {mapping}, "
                         f"concurrent managed access {managed}")
    else:
        lines.append(f"GPU: none ({gpu.get('reason', gpu.get('error', 'no CUDA device'))})")
    runtime_info = report["inference"]
    lines.append(f"TensorRT: {runtime_info.get('tensorrt') or 'not installed'}; ONNX Runtime: "
                 f"{runtime_info.get('onnxruntime') or 'not installed'} "
                 f"({', '.join(runtime_info.get('onnxruntime_providers', []))})")
    found = report["decoders"]
    opencv = found.get("opencv", {})
    if "error" in opencv:
        lines.append(f"decoder opencv: {opencv['error']}")
    else:
        lines.append(f"decoder opencv: OpenCV {opencv.get('version')} (FFmpeg {'yes' if opencv.get('ffmpeg') else 'no'}"
                     f", GStreamer {'yes' if opencv.get('gstreamer') else 'no'})")
    nvdec = found.get("nvdec", {})
    lines.append("decoder nvdec: " + (f"PyNvVideoCodec {nvdec.get('pynvvideocodec')}" if nvdec.get("available")
                                      else nvdec.get("reason", nvdec.get("error", "unavailable"))))
    jetson = found.get("jetson", {})
    if jetson.get("available"):
        present = sorted(name for name, ok in jetson.get("elements", {}).items() if ok)
        lines.append(f"decoder jetson: {jetson.get('version')}, decodes with {jetson.get('decode')}"
                     f"{' (Tegra)' if jetson.get('tegra') else ''}; elements present: {', '.join(present)}")
    else:
        lines.append(f"decoder jetson: unavailable ({jetson.get('reason', jetson.get('error', '?'))})")
    board = report["board_metrics"]
    if "error" in board:
        lines.append(f"board metrics: {board['error']}")
    elif board.get("thermal_zones") or board.get("power_rails") or board.get("gpu_load"):
        lines.append(f"board metrics: thermal zones {', '.join(board['thermal_zones']) or '-'}; power rails "
                     f"{', '.join(board['power_rails']) or '-'}; GPU load {board['gpu_load'] or '-'}")
    else:
        lines.append("board metrics: none (no Jetson sysfs files: streamd_jetson_* not exported)")
    chosen = report["paths"]
    if "error" in chosen:
        lines.append(f"path: {chosen['error']}")
    else:
        lines.append(f"path: backend {chosen['backend']} (model.backend = \"{chosen['backend_setting']}\")"
                     + (f"; GPU path frames {chosen['gpu_frames']}" if "gpu_frames" in chosen else "")
                     + f"; recommended decoder: {chosen['recommended_decoder']}")
        for source_id, decoder in chosen.get("sources", {}).items():
            lines.append(f"source {source_id}: {decoder}")
    return "\n".join(lines)


def run_doctor(config: Config | None, as_json: bool, write: Callable[[str], None] = print) -> int:
    import json  # noqa: PLC0415

    report = collect(config)
    write(json.dumps(report, indent=2, default=str) if as_json else format_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover - `streamd doctor` is the documented way
    sys.exit(run_doctor(None, "--json" in sys.argv))

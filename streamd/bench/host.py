"""What ``streamd bench --streams`` reads of the machine: its name, the CPU time a process and one
of its threads used, and how busy the GPUs were (NVML where ``pynvml`` imports, else ``nvidia-smi``
sampling every 100 ms; neither: None)."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import threading
import time
from collections import defaultdict

log = logging.getLogger(__name__)

GPU_SAMPLE_SECONDS = 0.1


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """The NVIDIA GPUs' names ([] without a GPU or without nvidia-smi)."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        result = subprocess.run([nvidia_smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def describe_machine() -> dict[str, object]:
    gpus = gpu_names()
    cpus = cpu_count()
    name = f"{cpus}-core {cpu_model()}"
    if gpus:
        name = f"{len(gpus)} x {gpus[0]}, {name}" if len(gpus) > 1 else f"{gpus[0]}, {name}"
    return {"name": name, "cpus": cpus, "cpu_model": cpu_model(), "gpus": gpus, "platform": platform.platform(),
            "python": platform.python_version()}


def process_cpu_seconds() -> float:
    """User + system CPU time of this process, every thread; at the resolution of ``time.thread_time``
    (``os.times`` counts in clock ticks, 10 ms, which swamps a short run's per-frame figures)."""
    return time.process_time()


def thread_cpu_seconds(native_id: int) -> float | None:
    """User + system CPU time of one thread of this process (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After "pid (comm)": field 3 is the state, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GpuBusySampler:
    """Samples every GPU's utilisation (the share of time a kernel ran) between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self._samples: dict[int, list[float]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self.method: str | None = None

    def start(self) -> None:
        try:
            import pynvml  # noqa: PLC0415 - optional

            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.method = "nvml"
            self._thread = threading.Thread(target=self._poll_nvml, args=(pynvml, handles), name="gpu-sampler",
                                            daemon=True)
        except Exception as error:  # absent or no driver: try nvidia-smi
            log.debug("NVML not usable (%s)", error)
            nvidia_smi = shutil.which("nvidia-smi")
            if nvidia_smi is None or not gpu_names():
                return
            self.method = "nvidia-smi"
            self._process = subprocess.Popen(
                [nvidia_smi, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", str(int(GPU_SAMPLE_SECONDS * 1000))], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True)
            self._thread = threading.Thread(target=self._read_nvidia_smi, args=(self._process.stdout,),
                                            name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, object]:
        """{"busy_fraction": the busiest GPU's mean, "per_gpu": [...], "method", "samples"}; busy_fraction
        is None where no GPU could be sampled."""
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._thread is not None:
            self._thread.join(5)
        per_gpu = [sum(values) / len(values) / 100.0 for _, values in sorted(self._samples.items()) if values]
        return {"busy_fraction": max(per_gpu) if per_gpu else None, "per_gpu": per_gpu, "method": self.method,
                "samples": sum(len(values) for values in self._samples.values())}

    def _poll_nvml(self, pynvml, handles) -> None:
        try:
            while not self._stop.wait(GPU_SAMPLE_SECONDS):
                for index, handle in enumerate(handles):
                    self._samples[index].append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        finally:
            pynvml.nvmlShutdown()

    def _read_nvidia_smi(self, lines) -> None:
        for line in lines:
            index, _, value = line.partition(",")
            try:
                self._samples[int(index)].append(float(value))
            except ValueError:
                continue

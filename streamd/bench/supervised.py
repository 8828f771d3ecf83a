"""``streamd bench --streams N --workers K``: the same measurement as ``streamd.bench.streams`` through a
real ``streamd run`` subprocess with K worker processes behind one endpoint, so what is measured is the
service a user runs. Beside the stream records: each worker's host cores and GPU memory, the NVDEC
and GPU busy fractions, and which of them is the ceiling."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streamd.bench.host import GpuBusySampler
from streamd.bench.standin import STANDIN_ENVIRONMENT
from streamd.config.load import parse_config
from streamd.publish.subscriber import Subscriber

log = logging.getLogger(__name__)

# Engines are built (or graphs captured) by every worker before it is up.
READY_TIMEOUT_SECONDS = 600.0
# Above this busy share a unit counts as the ceiling.
SATURATED = 0.9


def toml_text(document: dict) -> str:
    """A config document as TOML (scalars written as JSON, which TOML reads the same for these)."""
    def is_tables(value: object) -> bool:  # a source's zones and lines: [[sources.zones]], [[sources.lines]]
        return isinstance(value, list) and bool(value) and isinstance(value[0], dict)

    def table(values: dict) -> str:
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items() if not is_tables(value))

    def subtables(source: dict) -> str:
        return "".join(f"[[sources.{key}]]\n{table(item)}\n" for key, value in source.items() if is_tables(value)
                       for item in value)

    text = "".join(f"[[sources]]\n{table(source)}\n{subtables(source)}" for source in document["sources"])
    for name, values in document.items():
        if name != "sources":
            text += f"[{name}]\n{table(values)}\n"
    return text


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """/metrics as (sample name, labels) -> value, the ``worker`` label summed away (the in-process
    bench's snapshot format)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[tuple[str, tuple], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "worker"))
            values[(sample.name, labels)] += sample.value
    return dict(values)


def get_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def process_cpu_seconds_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gpu_memory_mib_by_pid() -> dict[int, float]:
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return {}
    try:
        result = subprocess.run([nvidia_smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    memory = {}
    for line in result.stdout.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                memory[int(parts[0])] = float(parts[1])
            except ValueError:
                continue
    return memory


class DecoderBusySampler:
    """NVDEC utilisation (nvidia-smi's ``utilization.decoder``) sampled through the window; None without a GPU."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._samples: list[float] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        nvidia_smi = shutil.which("nvidia-smi")
        if nvidia_smi is None:
            return
        self._process = subprocess.Popen(
            [nvidia_smi, "--query-gpu=utilization.decoder", "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, name="nvdec-sampler", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self._samples.append(float(line.strip()) / 100.0)
            except ValueError:
                continue

    def stop(self) -> float | None:
        if self._process is None:
            return None
        self._process.terminate()
        self._process.wait(5)
        if self._thread is not None:
            self._thread.join(2)
        return sum(self._samples) / len(self._samples) if self._samples else None


def ceiling(record: dict) -> str:
    """What limits the run: NVDEC, the GPU, or the host (the busiest worker's interpreter)."""
    nvdec, gpu = record.get("nvdec_busy_fraction"), record.get("gpu_busy_fraction")
    if nvdec is not None and nvdec >= SATURATED:
        return f"NVDEC ({nvdec:.0%} busy)"
    if gpu is not None and gpu >= SATURATED:
        return f"GPU ({gpu:.0%} busy)"
    workers = record.get("workers") or []
    if workers:
        busiest = max(workers, key=lambda w: w.get("cpu_cores") or 0.0)
        return f"host (worker {busiest['index']}: {busiest.get('cpu_cores') or 0:.2f} cores)"
    return "host"


def measure_streams_supervised(args: argparse.Namespace, streams: int, document: dict, receiver_class: type,
                               window_class: type, run_record) -> dict:  # noqa: ANN001 - streams' own record maker
    """One run through a ``streamd run`` subprocess with ``args.workers`` workers."""
    publish_port, metrics_port = free_tcp_port(), free_tcp_port()
    document = {**document, "publish": {**document["publish"], "endpoint": f"tcp://127.0.0.1:{publish_port}"},
                "metrics": {"enabled": True, "bind": f"127.0.0.1:{metrics_port}"},
                "daemon": {**document["daemon"], "workers": args.workers}}
    config = parse_config(document, Path.cwd(), "(bench --streams --workers)")
    folder = Path(tempfile.mkdtemp(prefix="streamd-bench-"))
    config_path = folder / "bench.toml"
    config_path.write_text(toml_text(document))
    log_file = open(folder / "service.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, **({STANDIN_ENVIRONMENT: "1"} if args.standin_engine else {})}
    service = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config_path)],
                               stdout=log_file, stderr=subprocess.STDOUT, env=env)
    subscriber = Subscriber(f"tcp://127.0.0.1:{publish_port}")
    receiver = receiver_class(subscriber)
    receiver.start()
    gpu, decoder = GpuBusySampler(), DecoderBusySampler()
    try:
        started = time.monotonic()
        detail = _wait_ready(service, metrics_port, folder / "service.log")
        build_seconds = time.monotonic() - started
        time.sleep(args.warmup_seconds)
        pids = {int(index): info["pid"] for index, info in get_json(metrics_port, "/healthz")[1]["workers"].items()}
        cpu_before = {index: process_cpu_seconds_of(pid) for index, pid in pids.items()}
        supervisor_before = process_cpu_seconds_of(service.pid)
        before = scrape(metrics_port)
        gpu.start()
        decoder.start()
        start_time, start_monotonic = time.time(), time.monotonic()
        time.sleep(args.seconds)
        seconds = time.monotonic() - start_monotonic
        end_time = time.time()
        after = scrape(metrics_port)
        gpu_busy, nvdec_busy = gpu.stop(), decoder.stop()
        cpu_after = {index: process_cpu_seconds_of(pid) for index, pid in pids.items()}
        supervisor_after = process_cpu_seconds_of(service.pid)
        memory = gpu_memory_mib_by_pid()
        if service.poll() is not None:
            raise RuntimeError(f"the service exited while measuring: {(folder / 'service.log').read_text()[-2000:]}")
        time.sleep(0.3)
    finally:
        receiver.stop_event.set()
        receiver.join(2.0)
        subscriber.close()
        gpu.stop()
        decoder.stop()
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(15)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        log_file.close()
    workers = []
    for index, pid in sorted(pids.items()):
        used = (cpu_after[index] or 0.0) - (cpu_before[index] or 0.0)
        workers.append({"index": index, "pid": pid, "sources": len(detail["workers"][str(index)]["sources"]),
                        "cpu_cores": used / seconds, "gpu_memory_mib": memory.get(pid)})
    supervisor_cores = ((supervisor_after or 0.0) - (supervisor_before or 0.0)) / seconds
    total_cpu = sum(w["cpu_cores"] for w in workers) * seconds + supervisor_cores * seconds
    window = window_class(start_time, end_time, seconds, before, after, total_cpu, None, gpu_busy)
    record = run_record(config, receiver.records(), window)
    record.update(events_messages=receiver.events_messages, workers_requested=args.workers,
                  workers=workers, supervisor_cpu_cores=supervisor_cores,
                  nvdec_busy_fraction=nvdec_busy, detector_build_seconds=build_seconds,
                  messages_dropped_by_workers=int(sum(v for (name, _), v in after.items()
                                                      if name == "streamd_worker_messages_dropped_total")
                                                  - sum(v for (name, _), v in before.items()
                                                        if name == "streamd_worker_messages_dropped_total")))
    record["ceiling"] = ceiling(record)
    shutil.rmtree(folder, ignore_errors=True)
    return record


def _wait_ready(service: subprocess.Popen, metrics_port: int, log_path: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"the service exited ({service.returncode}) before it was ready: "
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            status, detail = get_json(metrics_port, "/readyz")
        except (OSError, ValueError):
            status, detail = 0, {}
        if status == 200 and all(state == "streaming" for state in detail.get("sources", {}).values()):
            return detail
        time.sleep(0.5)
    raise RuntimeError(f"the service was not ready with every source streaming within {READY_TIMEOUT_SECONDS:.0f} s")

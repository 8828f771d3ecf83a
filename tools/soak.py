#!/usr/bin/env python3
"""Soak and churn: run the daemon for a while under churn and fail on resource growth.

    python tools/soak.py --duration 3600 --json /tmp/soak1h.json

The daemon (``python -m streamd run``, its own ports: port 0 everywhere, read back from its log)
runs the built-in synthetic-shapes model on a steady synthetic source that is never touched, an RTSP
camera served by tools/rtsp_server.py (run by the system Python with GStreamer; SIGKILLed and
restarted on the same port every ``--rtsp-kill-interval`` s) and sources that come and go. Churn,
each on its own schedule:

- every ``--reload-interval`` s a SIGHUP reload: adds or removes a source, restarts one with a new
  seed, or changes the model's score threshold (a detector swap), in turn;
- subscribers connect, read for a few seconds and leave;
- a preview viewer (when the daemon serves ``/preview``: ``[preview]``) opens a stream and leaves.

Every ``--sample-interval`` s it samples the daemon's RSS, threads and open fds (from /proc). It
fails (exit 1) when the daemon dies, when the steady source stops publishing, when RSS after
``--warmup`` grows by more than ``--max-rss-growth`` (the median of the last fifth of the samples
against the first fifth after warm-up, so one busy moment does not decide), or when threads or fds,
back in the starting configuration at the end, stay above the count they had in that configuration
after warm-up. GPU pinned/device memory is sampled too where ``nvidia-smi`` reports the process.
The JSON holds every sample, the churn counts and the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamd.publish.subscriber import Subscriber  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = REPO / "tools" / "rtsp_server.py"
STEADY_FPS = 5
START_TIMEOUT_SECONDS = 120.0
SETTLE_SECONDS = 30.0  # for threads/fds to come back after the last churn (an RTSP read may need its timeout)
STEADY_SILENCE_LIMIT_SECONDS = 15.0  # the steady source must never be silent this long


@dataclass
class Sample:
    elapsed_seconds: float
    rss_bytes: int
    threads: int
    fds: int
    gpu_memory_bytes: int | None
    sources: int  # in the config at the time
    gpu_memory_scope: str = ""  # "process" (nvidia-smi lists the daemon) or "device" (the GPU's used memory)


@dataclass
class Churn:
    reloads: int = 0
    reloads_applied: int = 0
    rtsp_kills: int = 0
    rtsp_restart_failures: int = 0  # the test server itself slow to die or start (a loaded machine), not streamd
    subscriber_sessions: int = 0
    preview_sessions: int = 0
    steady_messages: int = 0
    longest_steady_silence_seconds: float = 0.0


@dataclass
class Report:
    duration_seconds: float
    warmup_seconds: float
    samples: list[Sample] = field(default_factory=list)
    churn: Churn = field(default_factory=Churn)
    rtsp: bool = False
    preview: bool = False
    summary: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def process_sample(pid: int) -> tuple[int, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return rss_kib * 1024, len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def gpu_memory(pid: int, device: int) -> tuple[int | None, str]:
    """The daemon's device memory where ``nvidia-smi`` lists its process; otherwise (a sandbox that hides
    processes from the driver) the whole device's used memory: the soak must then be alone on that GPU."""
    if shutil.which("nvidia-smi") is None:
        return None, ""
    result = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                            capture_output=True, text=True, timeout=20)
    for line in result.stdout.splitlines():
        found_pid, _, used_mib = line.partition(",")
        if found_pid.strip() == str(pid):
            return int(used_mib.strip()) * 1024 * 1024, "process"
    result = subprocess.run(["nvidia-smi", f"--id={device}", "--query-gpu=memory.used",
                             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    try:
        return int(result.stdout.strip()) * 1024 * 1024, "device"
    except ValueError:
        return None, ""


class RtspCamera:
    """tools/rtsp_server.py under the system Python, on a port it picks, restarted on that port."""

    def __init__(self, video: Path, log_path: Path) -> None:
        self._video = video
        self._log_path = log_path
        self.port = 0
        self._process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        if not Path(SYSTEM_PYTHON).exists():
            return False
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "from gi.repository import GstRtspServer"], capture_output=True, timeout=60)
        return probe.returncode == 0

    def start(self) -> None:
        with open(self._log_path, "a") as log:
            self._process = subprocess.Popen(
                [SYSTEM_PYTHON, str(RTSP_SERVER), "--video", str(self._video), "--port", str(self.port),
                 "--mount", "cam", "--fps", str(STEADY_FPS), "--width", "320", "--height", "240",
                 "--repeat", "1000"], stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.2)
            if ready:
                line = self._process.stdout.readline()
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                    return
                if not line:
                    break
        raise RuntimeError(f"the RTSP server did not start (see {self._log_path})")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(60)  # 10 s was not enough at a load average of 12 on 2 cores
            self._process.stdout.close()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"


def synthetic(source_id: str, seed: int = 0) -> dict:
    return {"id": source_id, "kind": "synthetic", "fps": STEADY_FPS, "width": 320, "height": 240, "seed": seed}


def video_file(source_id: str, video: Path, seed: int = 0) -> dict:
    """GPU soak: the H.264 file looped at its own rate, decoded by NVDEC; an odd seed decodes it with OpenCV
    instead, so a restarted churn source also changes decoder (NVDEC surfaces and pinned frames released)."""
    return {"id": source_id, "kind": "file", "url": str(video), "loop": True,
            "decoder": "opencv" if seed % 2 else "nvdec"}


def render_config(sources: list[dict], score_threshold: float, preview: bool, model: str = "builtin:synthetic-shapes",
                  backend: str = "onnxruntime", device: int = 0, max_batch: int = 1) -> str:
    lines = []
    for source in sources:
        lines.append("[[sources]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in source.items()]
    lines += ["[model]", f"path = {json.dumps(model)}", f"backend = {json.dumps(backend)}",
              f"score_threshold = {score_threshold}",
              *(["workers = 1", "threads = 1"] if backend == "onnxruntime" else
                [f"device = {device}", f"max_batch = {max_batch}"]),
              "[publish]", 'endpoint = "tcp://127.0.0.1:*"', "send_hwm = 1000",
              "[metrics]", 'bind = "127.0.0.1:0"',
              "[daemon]", "status_interval_seconds = 60"]
    if preview:
        lines += ["[preview]", "enabled = true", 'bind = "127.0.0.1:0"']
    return "\n".join(lines) + "\n"


# The daemon with backend "tensorrt" built on the torch stand-in engine (no TensorRT on the GPU test machine),
# exactly as `streamd bench --standin-engine` installs it; otherwise `python -m streamd run`.
STANDIN_DAEMON = """import sys
from streamd.bench.streams import detector_builders
from streamd.cli import main
with detector_builders(True):
    sys.exit(main())
"""


def preview_supported() -> bool:
    try:
        from streamd.config.schema import PreviewConfig  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.report = Report(args.duration, args.warmup)
        self.report.preview = preview_supported() and not args.no_preview
        self.camera: RtspCamera | None = None
        self.base_sources: list[dict] = [self.source("steady")]
        self.config_path = work / "soak.toml"
        self.log_path = work / "daemon.log"
        self.daemon: subprocess.Popen | None = None
        self.publish_endpoint = ""
        self.preview_port = 0
        self.stop = threading.Event()
        self.steady_last_monotonic = time.monotonic()
        self.lock = threading.Lock()
        self.current_sources: list[dict] = []
        self.score_threshold = 0.3
        self.reload_step = 0

    def source(self, source_id: str, seed: int = 0) -> dict:
        if self.args.video is not None:
            return video_file(source_id, self.args.video, seed)
        return synthetic(source_id, seed)

    def render(self) -> str:
        return render_config(self.current_sources, self.score_threshold, self.report.preview, self.args.model,
                             self.args.backend, self.args.device, self.args.max_batch)

    # -- set-up ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.args.no_rtsp and RtspCamera.available():
            video = self.work / "camera.mp4"
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc=size=320x240:rate={STEADY_FPS}", "-frames:v", "100", "-c:v", "libx264",
                            "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(video)], check=True, timeout=120)
            self.camera = RtspCamera(video, self.work / "rtsp.log")
            self.camera.start()
            self.report.rtsp = True
            self.base_sources.append({"id": "camera", "kind": "rtsp", "url": self.camera.url,
                                      "open_timeout_seconds": 2.0, "read_timeout_seconds": 2.0,
                                      "stall_timeout_seconds": 3.0, "backoff_initial_seconds": 0.2,
                                      "backoff_max_seconds": 2.0})
        self.current_sources = list(self.base_sources)
        self.config_path.write_text(self.render())
        command = ["-c", STANDIN_DAEMON] if self.args.standin_engine else ["-m", "streamd"]
        self.daemon = subprocess.Popen([sys.executable, *command, "run", "--config", str(self.config_path)],
                                       stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, cwd=REPO)  # noqa: SIM115
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            log = self.log_path.read_text(errors="replace")
            published = re.search(r"publishing on (tcp://\S+),", log)
            preview = re.search(r"preview on http://[^:]+:(\d+)/", log)
            if published and (preview or not self.report.preview):
                self.publish_endpoint = published.group(1)
                self.preview_port = int(preview.group(1)) if preview else 0
                return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the daemon did not start: {self.log_path.read_text(errors='replace')[-3000:]}")

    # -- churn -------------------------------------------------------------------------------
    def reload(self, sources: list[dict], score_threshold: float) -> None:
        with self.lock:
            self.current_sources, self.score_threshold = sources, score_threshold
            self.config_path.write_text(self.render())
            before = self._log().count("reload applied")
            self.daemon.send_signal(signal.SIGHUP)
            self.report.churn.reloads += 1
        # Waited for even when the soak is ending: every reload sent must be answered.
        deadline = time.monotonic() + 60
        while self._log().count("reload applied") <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._log().count("reload applied") > before:
            self.report.churn.reloads_applied += 1

    def next_reload(self) -> None:
        """In turn: add a source, restart it (new seed), add a second, change the model, remove both
        (every step also gives the churn sources a new seed: they restart)."""
        step = self.reload_step % 5
        self.reload_step += 1
        base = list(self.base_sources)
        seed = self.reload_step
        threshold = self.score_threshold
        churn_a, churn_b = self.source("churn-a", seed), self.source("churn-b", seed)
        sources = {0: base + [churn_a],
                   1: base + [churn_a],
                   2: base + [churn_a, churn_b],
                   3: base + [churn_a, churn_b],
                   4: base}[step]
        if step == 3 and not self.args.no_model_swap:
            threshold = 0.35 if threshold == 0.3 else 0.3
        self.reload(sources, threshold)

    def churn_loop(self, interval: float, action) -> None:  # noqa: ANN001
        while not self.stop.wait(interval):
            try:
                action()
            except Exception as error:  # recorded, the soak goes on
                self.report.failures.append(f"churn {action.__name__}: {error}")

    def kill_camera(self) -> None:
        if self.camera is None:
            return
        try:
            self.camera.kill()
            self.report.churn.rtsp_kills += 1
            if not self.stop.wait(2.0):
                self.camera.start()
        except (subprocess.TimeoutExpired, RuntimeError):
            self.report.churn.rtsp_restart_failures += 1  # tried again at the next interval

    def subscriber_session(self) -> None:
        with Subscriber(self.publish_endpoint) as subscriber:
            subscriber.collect(3.0)
        self.report.churn.subscriber_sessions += 1

    def preview_session(self) -> None:
        if not self.preview_port:
            return
        url = f"http://127.0.0.1:{self.preview_port}/sources/steady/stream.mjpg"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and response.read(4096):
                    pass
        except OSError as error:
            self.report.failures.append(f"preview viewer: {error}")
            return
        self.report.churn.preview_sessions += 1

    def steady_watch(self) -> None:
        """A subscriber that stays: the steady source must keep publishing throughout."""
        with Subscriber(self.publish_endpoint, ("steady",)) as subscriber:
            while not self.stop.is_set():
                message = subscriber.receive_parts(0.5)
                now = time.monotonic()
                if message is not None:
                    self.report.churn.steady_messages += 1
                    self.steady_last_monotonic = now
                silence = now - self.steady_last_monotonic
                self.report.churn.longest_steady_silence_seconds = max(
                    self.report.churn.longest_steady_silence_seconds, round(silence, 2))

    # -- the run -----------------------------------------------------------------------------
    def sample(self, started: float) -> Sample:
        rss, threads, fds = process_sample(self.daemon.pid)
        device_memory, scope = gpu_memory(self.daemon.pid, self.args.device) if self.args.gpu else (None, "")
        return Sample(round(time.monotonic() - started, 1), rss, threads, fds, device_memory,
                      len(self.current_sources), scope)

    def run(self) -> Report:
        args = self.args
        self.start()
        started = time.monotonic()
        self.steady_last_monotonic = started
        workers = [threading.Thread(target=self.steady_watch, daemon=True),
                   threading.Thread(target=self.churn_loop, args=(args.subscriber_interval, self.subscriber_session),
                                    daemon=True)]
        if args.reload_interval > 0:
            workers.append(threading.Thread(target=self.churn_loop, args=(args.reload_interval, self.next_reload),
                                            daemon=True))
        if self.camera is not None:
            workers.append(threading.Thread(target=self.churn_loop, args=(args.rtsp_kill_interval, self.kill_camera),
                                            daemon=True))
        if self.report.preview:
            workers.append(threading.Thread(target=self.churn_loop, args=(args.preview_interval, self.preview_session),
                                            daemon=True))
        for worker in workers:
            worker.start()
        # The starting configuration's threads and fds after warm-up: the most seen in that
        # configuration over the next fifth of the run (a camera reconnecting holds a reader more).
        base_window_end = args.warmup + args.duration / 5
        base_samples: list[Sample] = []
        try:
            while time.monotonic() - started < args.duration:
                if self.daemon.poll() is not None:
                    self.report.failures.append(f"the daemon exited with status {self.daemon.returncode}")
                    break
                sample = self.sample(started)
                self.report.samples.append(sample)
                in_window = args.warmup <= sample.elapsed_seconds <= base_window_end
                if in_window and self.current_sources == self.base_sources:
                    base_samples.append(sample)
                time.sleep(args.sample_interval)
        finally:
            self.stop.set()
            for worker in workers:
                worker.join(30)
        base = (Sample(0, 0, max(s.threads for s in base_samples), max(s.fds for s in base_samples), None,
                       len(self.base_sources)) if base_samples else None)
        if self.daemon.poll() is None:
            # Back to the starting configuration, camera up: threads and fds must come back.
            self.stop.clear()
            if self.camera is not None and not self.camera.running:
                self.kill_camera()  # restarts it
            if args.reload_interval > 0:
                self.reload(list(self.base_sources), 0.3)
            self.stop.set()
            final = self.settle(started, base)
            self.summarise(base, final)
        return self.report

    def settle(self, started: float, base: Sample | None) -> Sample:
        deadline = time.monotonic() + SETTLE_SECONDS
        final = self.sample(started)
        while base is not None and (final.threads > base.threads or final.fds > base.fds) \
                and time.monotonic() < deadline:
            time.sleep(1.0)
            final = self.sample(started)
        return final

    def summarise(self, base: Sample | None, final: Sample) -> None:
        report, args = self.report, self.args
        samples = report.samples
        after = [s for s in samples if s.elapsed_seconds >= args.warmup] or samples
        fifth = max(1, len(after) // 5)
        rss_start = statistics.median(s.rss_bytes for s in after[:fifth])
        rss_end = statistics.median(s.rss_bytes for s in after[-fifth:])
        growth = rss_end / rss_start - 1
        report.summary = {
            "rss_first_mb": round(samples[0].rss_bytes / 2**20, 1),
            "rss_after_warmup_mb": round(rss_start / 2**20, 1),
            "rss_last_mb": round(samples[-1].rss_bytes / 2**20, 1),
            "rss_growth_after_warmup": round(growth, 4),
            "threads_max": max(s.threads for s in samples), "fds_max": max(s.fds for s in samples),
            "threads_base_after_warmup_max": base.threads if base else None,
            "fds_base_after_warmup_max": base.fds if base else None,
            "threads_final": final.threads, "fds_final": final.fds,
            "gpu_memory_first_mb": _mb(samples[0].gpu_memory_bytes),
            "gpu_memory_last_mb": _mb(samples[-1].gpu_memory_bytes),
            "samples": len(samples),
        }
        device_memory = [s for s in after if s.gpu_memory_bytes is not None]
        if args.gpu and len(device_memory) < 2:
            report.failures.append("no GPU memory samples (nvidia-smi missing or silent)")
        elif device_memory:
            device_fifth = max(1, len(device_memory) // 5)
            device_start = statistics.median(s.gpu_memory_bytes for s in device_memory[:device_fifth])
            device_end = statistics.median(s.gpu_memory_bytes for s in device_memory[-device_fifth:])
            device_growth = device_end / device_start - 1
            report.summary.update({
                "gpu_memory_scope": device_memory[-1].gpu_memory_scope,
                "gpu_memory_after_warmup_mb": _mb(int(device_start)),
                "gpu_memory_max_mb": _mb(max(s.gpu_memory_bytes for s in device_memory)),
                "gpu_memory_final_mb": _mb(final.gpu_memory_bytes),
                "gpu_memory_growth_after_warmup": round(device_growth, 4)})
            if device_growth > args.max_gpu_memory_growth:
                report.failures.append(f"GPU memory grew {device_growth:.1%} after warm-up "
                                       f"(limit {args.max_gpu_memory_growth:.0%})")
        if growth > args.max_rss_growth:
            report.failures.append(f"RSS grew {growth:.1%} after warm-up (limit {args.max_rss_growth:.0%})")
        if base is None:
            report.failures.append("no sample in the starting configuration after warm-up (run longer)")
        elif final.threads > base.threads or final.fds > base.fds:
            report.failures.append(f"threads/fds {final.threads}/{final.fds} did not come back to "
                                   f"{base.threads}/{base.fds} within {SETTLE_SECONDS:.0f} s")
        if report.churn.longest_steady_silence_seconds > STEADY_SILENCE_LIMIT_SECONDS:
            report.failures.append(f"the steady source was silent {report.churn.longest_steady_silence_seconds} s")
        if report.churn.reloads and report.churn.reloads_applied < report.churn.reloads:
            report.failures.append(f"{report.churn.reloads - report.churn.reloads_applied} of "
                                   f"{report.churn.reloads} reloads were not applied")

    def close(self) -> None:
        self.stop.set()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(10)
        if self.camera is not None:
            self.camera.kill()

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds before growth counts (default: a fifth "
                        "of the duration, at most 300)")
    parser.add_argument("--sample-interval", type=float, default=5.0)
    parser.add_argument("--reload-interval", type=float, default=5.0)
    parser.add_argument("--subscriber-interval", type=float, default=7.0)
    parser.add_argument("--rtsp-kill-interval", type=float, default=30.0)
    parser.add_argument("--preview-interval", type=float, default=11.0)
    parser.add_argument("--max-rss-growth", type=float, default=0.05, help="after warm-up, as a fraction")
    parser.add_argument("--model", default="builtin:synthetic-shapes", help="model.path (an absolute path)")
    parser.add_argument("--backend", default="onnxruntime", help="model.backend (tensorrt on a GPU host: device "
                        "memory is then sampled from nvidia-smi)")
    parser.add_argument("--video", type=Path, help="GPU soak: sources are this H.264 file, looped, decoded by NVDEC "
                        "(churn sources alternate NVDEC and OpenCV) instead of synthetic scenes")
    parser.add_argument("--standin-engine", action="store_true", help="backend tensorrt on the torch stand-in engine "
                        "(tests/gpu/standin_engine.py: a checkout with torch; no TensorRT needed)")
    parser.add_argument("--device", type=int, default=0, help="model.device for backend tensorrt")
    parser.add_argument("--max-batch", type=int, default=8, help="model.max_batch for backend tensorrt")
    parser.add_argument("--max-gpu-memory-growth", type=float, default=0.05, help="after warm-up, as a fraction")
    parser.add_argument("--no-model-swap", action="store_true", help="reloads change sources only (to tell "
                        "a detector swap's memory from the sources')")
    parser.add_argument("--no-rtsp", action="store_true", help="no RTSP camera (no GStreamer here)")
    parser.add_argument("--no-preview", action="store_true")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (daemon and RTSP logs)")
    args = parser.parse_args(argv)
    if not args.warmup:
        args.warmup = min(300.0, args.duration / 5)
    if args.standin_engine:
        args.backend = "tensorrt"
        if args.model == "builtin:synthetic-shapes":
            parser.error("--standin-engine needs --model: an ONNX file (the stand-in engine runs its graph)")
    args.gpu = args.backend == "tensorrt"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="streamd-soak-"))
    soak = Soak(args, work)
    try:
        report = soak.run()
    except Exception as error:
        soak.report.failures.append(f"{type(error).__name__}: {error}")
        report = soak.report
    finally:
        soak.close()
    document = {**asdict(report), "passed": not report.failures, "work": str(work),
                "daemon_log_tail": (work / "daemon.log").read_text(errors="replace")[-4000:]
                if (work / "daemon.log").exists() else ""}
    if args.json:
        args.json.write_text(json.dumps(document, indent=1))
    print(json.dumps({"passed": document["passed"], "summary": report.summary, "churn": asdict(report.churn),
                      "failures": report.failures}, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())

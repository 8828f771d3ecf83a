"""``streamd bench``, end to end: the daemon against the best hand-written loop doing the same work.

The same ``--files`` copies of --source, each a file source read flat out (``pace = "fast"``,
``max_frames = --frames``), go through:

- a real ``streamd run`` subprocess per variant: one process (``daemon.workers = 1``) and worker
  processes (``daemon.workers = 2``), each with tracking on (the daemon's default) and off, to a real
  ZeroMQ subscriber in this process that must receive every message;
- the hand-written loop (``streamd.bench.handwritten``) in each of its process layouts.

Both sides are measured alike: this process stamps each message (the daemon's, or the few bytes the
hand-written loop sends per finished frame) as it arrives. Frames per second is the frames after the
first over the seconds from the first to the last; CPU seconds per frame is the CPU time every
process of the variant (the daemon's supervisor and workers, or the hand-written processes) spent
between those two arrivals, read from /proc, over the same frames. Start-up (imports, model load)
falls outside both. The variants alternate within each round (reversed every other round), since a
shared machine's load drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from streamd.bench import handwritten
from streamd.config.schema import Config
from streamd.publish.message import decode
from streamd.publish.subscriber import Subscriber

# Per run, on top of the frames at a slow 2 fps: start-up, and a machine that is busy meanwhile.
RUN_TIMEOUT_SECONDS = 120.0
EXIT_TIMEOUT_SECONDS = 30.0
SEND_HWM = 1_000_000  # every message of a run can wait for the subscriber: none may be dropped


@dataclass(frozen=True)
class StreamdVariant:
    name: str
    label: str
    workers: int
    tracking: bool


@dataclass(frozen=True)
class HandwrittenVariant:
    name: str
    label: str
    layout: str


@dataclass
class Run:
    """One variant's run: what arrived, when, and the CPU its processes spent meanwhile."""

    expected_per_file: list[int]
    stamps: list[float] = field(default_factory=list)
    files: list[int] = field(default_factory=list)  # the file (source) index of each arrival
    cpu_first: float | None = None
    cpu_last: float | None = None
    lifetime_cpu_seconds: float | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)

    def arrived(self, file_index: int, cpu: CpuReader) -> None:
        """Stamp one arrival, and read the variant's CPU time (the last reading is the run's end)."""
        self.stamps.append(time.monotonic())
        self.files.append(file_index)
        self.cpu_last = cpu.read()
        if self.cpu_first is None:
            self.cpu_first = self.cpu_last

    def summary(self) -> dict[str, object]:
        expected = sum(self.expected_per_file)
        frames = len(self.stamps)
        span = self.stamps[-1] - self.stamps[0] if frames > 1 else 0.0
        fps = (frames - 1) / span if span > 0 else 0.0
        cpu = ((self.cpu_last - self.cpu_first) / (frames - 1)
               if frames > 1 and self.cpu_first is not None and self.cpu_last is not None else None)
        return {"messages": frames, "expected": expected, "missing": max(0, expected - frames), "fps": fps,
                "seconds": span, "overlap_fps": self._overlap_fps(), "cpu_seconds_per_frame": cpu,
                "lifetime_cpu_seconds": self.lifetime_cpu_seconds, "exit_code": self.exit_code,
                "problems": self.problems}

    def _overlap_fps(self) -> float | None:
        """Frames per second while every file was running: from the last file's first arrival to the
        first file's last (start-up and finishing skew left out)."""
        firsts: dict[int, float] = {}
        lasts: dict[int, float] = {}
        for stamp, file_index in zip(self.stamps, self.files):
            firsts.setdefault(file_index, stamp)
            lasts[file_index] = stamp
        if len(firsts) < len(self.expected_per_file):
            return None
        start, end = max(firsts.values()), min(lasts.values())
        inside = sum(start <= stamp <= end for stamp in self.stamps)
        return (inside - 1) / (end - start) if end > start and inside > 1 else None


# -- the CPU time of a process tree ------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def _stat_cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None  # gone (reaped: its time is in its parent's cutime / cstime now)
    # After "pid (comm)": utime, stime, cutime, cstime are fields 14-17, here 11-14.
    return sum(int(value) for value in fields[11:15])


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and every descendant."""
    found, pending = [], list(roots)
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += _children(pid)
    return found


class CpuReader:
    """User + system CPU seconds of a variant's processes, their threads, and the children they have
    reaped (a worker that ended before the others still counts). The processes are found at the first
    reading (every worker of a service is started before any publishes); later readings read only
    their /proc/PID/stat, cheap enough for every arrival."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.pids: list[int] | None = None

    def read(self) -> float:
        if self.pids is None:
            self.pids = process_tree(self.roots)
        return sum(ticks for pid in self.pids if (ticks := _stat_cpu_ticks(pid)) is not None) / _TICK


def _children_rusage_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the daemon ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _toml(value: object) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them are the same in TOML


def streamd_config_text(model: Config, files: list[str], frames: int, workers: int, tracking: bool,
                        port: int) -> str:
    """The config of one daemon run: ``files`` as file sources read flat out, the bench's model settings."""
    sources = "".join(f"[[sources]]\nid = \"file{index}\"\nkind = \"file\"\nurl = {_toml(path)}\n"
                      f"pace = \"fast\"\nmax_frames = {frames}\n\n" for index, path in enumerate(files))
    settings = model.model
    model_lines = [f"path = {_toml(str(Path(settings.path).resolve()))}", f"classes = {_toml(list(settings.classes))}",
                   f"backend = {_toml(settings.backend)}", f"workers = {settings.workers}",
                   f"threads = {settings.threads}"]
    return (sources + "[model]\n" + "\n".join(model_lines) + "\n\n"
            f"[publish]\nendpoint = \"tcp://127.0.0.1:{port}\"\nsend_hwm = {SEND_HWM}\n"
            "wait_for_subscriber_seconds = 60.0\n\n"
            "[metrics]\nenabled = false\n\n"
            f"[tracking]\nenabled = {_toml(tracking)}\n\n"
            f"[daemon]\nworkers = {workers}\nstatus_interval_seconds = 0\nlog_level = \"warning\"\n")


def run_streamd(config: Config, files: list[str], frames: int, expected_per_file: list[int],
                variant: StreamdVariant, folder: Path) -> Run:
    run = Run(expected_per_file)
    port = free_port()
    config_path = folder / f"{variant.name}.toml"
    config_path.write_text(streamd_config_text(config, files, frames, variant.workers, variant.tracking, port))
    log_path = folder / f"{variant.name}.log"
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")
    index_of = {f"file{index}".encode(): index for index in range(len(files))}
    payloads: list[list[bytes]] = []
    lifetime_before = _children_rusage_seconds()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT)
    cpu = CpuReader([process.pid])
    try:
        expected = sum(expected_per_file)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS + expected / 2
        while len(payloads) < expected and time.monotonic() < deadline:
            parts = subscriber.receive_parts(0.2)
            if parts is None:
                if process.poll() is not None:
                    break
                continue
            run.arrived(index_of.get(parts[0], -1), cpu)
            payloads.append(parts)
        # Anything more (a repeat) would show here.
        while (parts := subscriber.receive_parts(0.2)) is not None:
            payloads.append(parts)
        try:
            run.exit_code = process.wait(EXIT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            run.problems.append(f"still running {EXIT_TIMEOUT_SECONDS:g} s after the last message: stopped")
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subscriber.close()
    run.lifetime_cpu_seconds = _children_rusage_seconds() - lifetime_before
    run.problems += _check_messages(payloads, expected_per_file)
    if run.exit_code not in (0, None):
        run.problems.append(f"exit status {run.exit_code}")
    if run.problems:
        run.problems.append("log: " + log_path.read_text(errors="replace")[-2000:])
    return run


def _check_messages(payloads: list[list[bytes]], expected_per_file: list[int]) -> list[str]:
    """Every file's frames once each, in order, and one service-wide sequence without a gap."""
    problems = []
    indices: dict[str, list[int]] = defaultdict(list)
    sequences = []
    for parts in payloads:
        message = decode(parts)
        indices[message["source"]].append(message["frame_index"])
        sequences.append(message["sequence"])
    for index, expected in enumerate(expected_per_file):
        got = indices.pop(f"file{index}", [])
        if got != list(range(expected)):
            problems.append(f"file{index}: {len(got)} messages of {expected}"
                            + ("" if len(got) != expected else ", not in frame order"))
    if indices:
        problems.append(f"messages of unknown sources {sorted(indices)}")
    if sorted(sequences) != list(range(min(sequences, default=0), min(sequences, default=0) + len(sequences))):
        problems.append("message sequence numbers have a gap or a repeat")
    return problems


# -- the hand-written loop ---------------------------------------------------------------------

def run_handwritten(work: handwritten.Work, expected_per_file: list[int], variant: HandwrittenVariant) -> Run:
    run = Run(expected_per_file)
    lifetime_before = _children_rusage_seconds()
    processes, receivers = handwritten.start_layout(work, variant.layout)
    cpu = CpuReader([process.pid for process in processes])
    received = [0] * len(expected_per_file)
    open_receivers = list(receivers)
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS + sum(expected_per_file) / 2
    try:
        while open_receivers and time.monotonic() < deadline:
            for receiver in wait(open_receivers, timeout=0.2):
                try:
                    report = receiver.recv_bytes()
                except EOFError:
                    report = handwritten.END
                if report == handwritten.END:
                    open_receivers.remove(receiver)
                    continue
                file_index, _, _ = handwritten.REPORT.unpack(report)
                received[file_index] += 1
                run.arrived(file_index, cpu)
        if open_receivers:
            run.problems.append(f"not finished after {deadline:.0f} s")
    finally:
        for process in processes:
            process.join(EXIT_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for receiver in receivers:
            receiver.close()
    run.lifetime_cpu_seconds = _children_rusage_seconds() - lifetime_before
    run.exit_code = max((process.exitcode or 0 for process in processes), default=0)
    for index, (got, expected) in enumerate(zip(received, expected_per_file)):
        if got != expected:
            run.problems.append(f"file{index}: {got} frames of {expected}")
    if run.exit_code:
        run.problems.append(f"exit status {run.exit_code}")
    return run


# -- the comparison ----------------------------------------------------------------------------

STREAMD_VARIANTS = (
    StreamdVariant("streamd_one_process", "streamd, 1 process, tracking on", 1, True),
    StreamdVariant("streamd_one_process_tracking_off", "streamd, 1 process, tracking off", 1, False),
    StreamdVariant("streamd_workers_2", "streamd, workers = 2, tracking on", 2, True),
    StreamdVariant("streamd_workers_2_tracking_off", "streamd, workers = 2, tracking off", 2, False),
)


def handwritten_variants(files: int) -> tuple[HandwrittenVariant, ...]:
    cpus = handwritten.cores()

    def threads(layout: str) -> str:
        count = handwritten.threads_for(layout, files, cpus)
        return f"{count} thread{'s' if count > 1 else ''}"

    return (
        HandwrittenVariant("handwritten_one_process", f"hand-written, 1 process, {threads('one_process')}",
                           "one_process"),
        HandwrittenVariant("handwritten_process_per_file",
                           f"hand-written, a process per file, {threads('process_per_file')} each",
                           "process_per_file"),
        HandwrittenVariant("handwritten_thread_per_file",
                           f"hand-written, 1 process, a thread per file, one session of "
                           f"{threads('thread_per_file')}", "thread_per_file"),
        HandwrittenVariant("handwritten_pipelined",
                           f"hand-written, 1 process, reader threads + {threads('pipelined')} inference",
                           "pipelined"),
    )


def frames_in(path: str, limit: int) -> int:
    """How many frames the file delivers, at most ``limit`` (what a file source with max_frames reads)."""
    import cv2  # noqa: PLC0415

    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    count = 0
    while count < limit and capture.grab():
        count += 1
    capture.release()
    return count


def write_synthetic_video(path: Path, frames: int) -> None:
    """The demo's synthetic scene as a video file (MJPG), for --source synthetic."""
    import cv2  # noqa: PLC0415

    from streamd.models.demo_config import demo_source_table  # noqa: PLC0415
    from streamd.sources.synthetic import render  # noqa: PLC0415

    scene = demo_source_table()
    width, height = int(scene["width"]), int(scene["height"])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(scene["fps"]), (width, height))
    for index in range(frames):
        writer.write(render(int(scene["seed"]), index, width, height)[0])
    writer.release()


def _median(values: list) -> float | None:
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def _best(rounds: dict[str, list], names: list[str], round_index: int, key, lowest: bool = False
          ) -> tuple[str | None, float | None]:
    values = [(rounds[name][round_index][key], name) for name in names
              if rounds[name][round_index][key] is not None and not rounds[name][round_index]["missing"]]
    if not values:
        return None, None
    value, name = (min if lowest else max)(values)
    return name, value


def run_end_to_end(args: argparse.Namespace, config: Config, source_path: str | None) -> dict[str, object]:
    """The comparison's results (the bench JSON's ``end_to_end``); prints progress to stderr."""
    files = args.files
    with tempfile.TemporaryDirectory(prefix="streamd-bench-") as folder_name:
        folder = Path(folder_name)
        if source_path is None:  # the synthetic scene: as a file, like any other source here
            source_path = str(folder / "synthetic.avi")
            write_synthetic_video(Path(source_path), args.frames)
        per_file = frames_in(source_path, args.frames)
        expected_per_file = [per_file] * files
        source_path = str(Path(source_path).resolve())  # the daemon's config lives elsewhere
        paths = [source_path] * files
        model_path = str(Path(config.model.path).resolve())
        work = handwritten.Work(model_path, tuple(paths), args.frames, *_model_facts(config))
        variants: list = [*STREAMD_VARIANTS, *handwritten_variants(files)]
        runs: dict[str, list[dict]] = {variant.name: [] for variant in variants}
        print(f"end to end: {files} copies of {Path(source_path).name}, {per_file} frames each, read flat out "
              f"({sum(expected_per_file)} messages a run), {args.rounds} round(s)", file=sys.stderr, flush=True)
        for round_index in range(args.rounds):
            for variant in variants if round_index % 2 == 0 else reversed(variants):
                if isinstance(variant, StreamdVariant):
                    run = run_streamd(config, paths, args.frames, expected_per_file, variant, folder)
                else:
                    run = run_handwritten(work, expected_per_file, variant)
                summary = run.summary()
                runs[variant.name].append(summary)
                print(f"round {round_index + 1}/{args.rounds}: {variant.label}: {summary['fps']:.1f} fps, "
                      f"{_ms(summary['cpu_seconds_per_frame'])} CPU ms/frame, "
                      f"{summary['messages']}/{summary['expected']} frames"
                      + (f"; {'; '.join(summary['problems'])}" if summary["problems"] else ""),
                      file=sys.stderr, flush=True)
    return _results(args, source_path, per_file, variants, runs)


def _model_facts(config: Config) -> tuple[str, int, float, float, int]:
    """The model's output layout and class count (as the daemon resolves them) and the thresholds."""
    import dataclasses  # noqa: PLC0415

    from streamd.inference.factory import build_detector  # noqa: PLC0415

    model = config.model
    detector = build_detector(dataclasses.replace(model, fold_preprocessing=False))
    try:
        decoder = detector.decoder
        return decoder.layout, decoder.num_classes, model.score_threshold, model.nms_threshold, model.max_detections
    finally:
        detector.close()


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def _results(args: argparse.Namespace, source_path: str, per_file: int, variants: list,
             runs: dict[str, list[dict]]) -> dict[str, object]:
    rounds = args.rounds
    streamd_on = [v.name for v in STREAMD_VARIANTS if v.tracking]
    streamd_off = [v.name for v in STREAMD_VARIANTS if not v.tracking]
    hand = [v.name for v in variants if isinstance(v, HandwrittenVariant)]
    per_round: dict[str, list] = defaultdict(list)
    for index in range(rounds):
        hand_name, hand_fps = _best(runs, hand, index, "fps")
        off_name, off_fps = _best(runs, streamd_off, index, "fps")
        on_name, on_fps = _best(runs, streamd_on, index, "fps")
        _, hand_cpu = _best(runs, hand, index, "cpu_seconds_per_frame", lowest=True)
        _, off_cpu = _best(runs, streamd_off, index, "cpu_seconds_per_frame", lowest=True)
        _, on_cpu = _best(runs, streamd_on, index, "cpu_seconds_per_frame", lowest=True)
        for key, value in (("handwritten_best", hand_name), ("handwritten_best_fps", hand_fps),
                           ("streamd_best", off_name), ("streamd_best_fps", off_fps),
                           ("streamd_best_tracking_on", on_name), ("streamd_best_fps_tracking_on", on_fps),
                           ("fps_ratio", _ratio(off_fps, hand_fps)),
                           ("fps_ratio_tracking_on", _ratio(on_fps, hand_fps)),
                           ("handwritten_lowest_cpu_seconds_per_frame", hand_cpu),
                           ("streamd_lowest_cpu_seconds_per_frame", off_cpu),
                           ("streamd_lowest_cpu_seconds_per_frame_tracking_on", on_cpu),
                           ("cpu_ratio", _ratio(hand_cpu, off_cpu)),
                           ("cpu_ratio_tracking_on", _ratio(hand_cpu, on_cpu))):
            per_round[key].append(value)
    variant_results = {}
    for variant in variants:
        summaries = runs[variant.name]
        variant_results[variant.name] = {
            "label": variant.label,
            **({"daemon_workers": variant.workers, "tracking": variant.tracking}
               if isinstance(variant, StreamdVariant) else
               {"layout": variant.layout, "processes": handwritten.processes_for(variant.layout, args.files),
                "threads_per_session": handwritten.threads_for(variant.layout, args.files)}),
            "fps": _median([s["fps"] for s in summaries]),
            "overlap_fps": _median([s["overlap_fps"] for s in summaries]),
            "cpu_seconds_per_frame": _median([s["cpu_seconds_per_frame"] for s in summaries]),
            # Each round's fps over that round's best hand-written fps: every variant's own standing, a
            # run that lost messages included (the best-of ratios leave those out).
            "fps_over_handwritten_best": _median([_ratio(s["fps"], best) for s, best
                                                  in zip(summaries, per_round["handwritten_best_fps"])]),
            "rounds": summaries,
        }
    fps_ratios = [value for value in per_round["fps_ratio"] if value is not None]
    missing = sum(s["missing"] for summaries in runs.values() for s in summaries)
    troubled = sum(bool(s["problems"]) for summaries in runs.values() for s in summaries)
    return {
        "source": source_path if args.source != "synthetic" else "synthetic", "files": args.files,
        "frames_per_file": per_file, "messages_per_run": per_file * args.files, "rounds": rounds,
        "cpus": handwritten.cores(),
        "definitions": {
            "fps": "frames after the first / seconds from the first frame's arrival to the last's, as this "
                   "process receives them (the daemon's ZeroMQ messages, the hand-written loop's reports)",
            "overlap_fps": "the same over the time every file was running (last file's first arrival to the "
                           "first file's last)",
            "cpu_seconds_per_frame": "user + system CPU of every process of the variant between the first and the "
                                     "last arrival, over the frames after the first",
            "fps_ratio": "the round's best streamd fps (tracking off) / the round's best hand-written fps; best "
                         "of the runs that lost no message",
            "fps_ratio_tracking_on": "the round's best streamd fps (tracking on) / the round's best hand-written fps",
            "cpu_ratio": "the round's lowest hand-written CPU per frame / the round's lowest streamd CPU per frame "
                         "(tracking off)",
            "order": "every round runs every variant, in the listed order in odd rounds and reversed in even ones",
        },
        "variants": variant_results,
        "per_round": dict(per_round),
        "fps_ratio": _median(per_round["fps_ratio"]),
        "fps_ratio_min": min(fps_ratios, default=None), "fps_ratio_max": max(fps_ratios, default=None),
        "fps_ratio_tracking_on": _median(per_round["fps_ratio_tracking_on"]),
        "cpu_ratio": _median(per_round["cpu_ratio"]),
        "cpu_ratio_tracking_on": _median(per_round["cpu_ratio_tracking_on"]),
        "messages_missing": missing, "runs_with_problems": troubled,
    }


def print_end_to_end(results: dict[str, object]) -> None:
    """The comparison as lines that say what is divided by what."""
    variants = results["variants"]
    rows = [(f"end to end, {results['files']} files x {results['frames_per_file']} frames, read flat out",
             "fps (median) | fps while all files ran | CPU ms/frame (median) | fps / hand-written best fps")]
    for result in variants.values():
        rows.append((result["label"], f"{_number(result['fps'])} | {_number(result['overlap_fps'])} | "
                                      f"{_ms(result['cpu_seconds_per_frame'])} | "
                                      f"{_number(result['fps_over_handwritten_best'], 3)}"
                                      + (f" | messages missing: {lost}" if (lost := sum(
                                          r["missing"] for r in result["rounds"])) else "")))
    spread = (f"; rounds {results['fps_ratio_min']:.3f}-{results['fps_ratio_max']:.3f}"
              if results["fps_ratio_min"] is not None else "")
    rows += [
        ("streamd best fps, tracking off / hand-written best fps",
         f"{_number(results['fps_ratio'], 3)} (median of rounds{spread})"),
        ("streamd best fps, tracking on / hand-written best fps",
         f"{_number(results['fps_ratio_tracking_on'], 3)} (median of rounds)"),
        ("hand-written lowest CPU ms/frame / streamd lowest, tracking off",
         f"{_number(results['cpu_ratio'], 3)} (median of rounds)"),
        ("hand-written lowest CPU ms/frame / streamd lowest, tracking on",
         f"{_number(results['cpu_ratio_tracking_on'], 3)} (median of rounds)"),
        ("messages missing, every run together", str(results["messages_missing"])),
        ("runs with a problem (missing, out of order, exit status)", str(results["runs_with_problems"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

#!/usr/bin/env python3
"""Randomly corrupted videos through one daemon, beside a good source: the daemon never exits, the good
source keeps its rate, memory stays bounded, and each bad file costs a line or two of log.

    python benchmarks/media_fuzz.py --variants 200 --json benchmarks/results/MACHINE_media-fuzz.json

Re-encodes the first seconds of vtest.avi (H.264 in MP4 with and without faststart and in MPEG-TS,
H.265 in Matroska, MPEG-4 part 2 and MJPEG in AVI), then makes --variants corrupted copies, each with
one to three mutations drawn from: truncation, byte flips, a block overwritten with noise, a block
zeroed, two MP4 boxes swapped (top level, or children of moov or trak; two equal blocks elsewhere),
an MP4 box size rewritten. One `streamd run` (subprocess) plays a good re-encode (looping, at its own
10 fps); after a baseline with it alone, reloads (SIGHUP) bring in the variants --per-round at a time
(looping files, at their own rate), each round held --round-seconds, then a last stretch with the
good source alone. Measured: the good source's messages per second in the baseline and while the
variants ran, the daemon's RSS (every 0.5 s) and CPU, each variant's outcome (frames published,
errors by kind, state) and its WARNING lines, the daemon's exit status after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import provenance  # noqa: E402
from streamd.bench.supervised import free_tcp_port, get_json, process_cpu_seconds_of, scrape, toml_text  # noqa: E402
from streamd.publish.subscriber import Subscriber  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "vtest.avi"
GOOD_FPS = 10.0
# Re-encodes the variants are made from: name -> ffmpeg output arguments.
ENCODINGS = {
    "h264_faststart.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p",
                           "-movflags", "+faststart"],
    "h264.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"],
    "h264.ts": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-f", "mpegts"],
    "h265.mkv": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-g", "10",
                 "-pix_fmt", "yuv420p"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-q:v", "5", "-g", "10"],
    "mjpeg.avi": ["-c:v", "mjpeg", "-q:v", "5"],
}
MUTATIONS = ("truncate", "flip", "overwrite", "zero", "swap_boxes", "box_size")
MUTATION_WEIGHTS = (25, 25, 15, 10, 15, 10)
_BOX_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *arguments], check=True, timeout=300)


def make_encodings(video: Path, folder: Path, seconds: float) -> dict[str, Path]:
    made = {}
    for name, arguments in ENCODINGS.items():
        path = folder / name
        ffmpeg("-i", str(video), "-t", f"{seconds:g}", "-vf", "scale=384:288", "-an", *arguments, str(path))
        made[name] = path
    return made


def mp4_boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of the boxes between start and end; stops at the first that does not fit."""
    boxes, offset = [], start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", bytes(data[offset:offset + 8]))
        if size == 1 and offset + 16 <= end:
            size = struct.unpack(">Q", bytes(data[offset + 8:offset + 16]))[0]
        if size < 8 or offset + size > end:
            break
        boxes.append((offset, size, kind))
        offset += size
    return boxes


def box_tree(data: bytes | bytearray) -> list[list[tuple[int, int, bytes]]]:
    """Sibling groups of an MP4's boxes: the top level, then the children of each container box."""
    groups, pending = [], [(0, len(data))]
    while pending:
        start, end = pending.pop()
        boxes = mp4_boxes(data, start, end)
        if boxes:
            groups.append(boxes)
        pending += [(offset + 8, offset + size) for offset, size, kind in boxes if kind in _BOX_CONTAINERS]
    return groups


def mutate(data: bytearray, kind: str, rng: random.Random) -> tuple[bytearray, str]:
    """One mutation of ``data``; the result and what was done, in words."""
    length = len(data)
    if length == 0:
        return data, "empty already"
    if kind == "truncate":
        keep = int(length * rng.random() ** 2)  # more short files than long ones
        return data[:keep], f"truncate to {keep} of {length} bytes"
    if kind == "flip":
        count = rng.randint(1, 200)
        for _ in range(count):
            data[rng.randrange(length)] ^= rng.randint(1, 255)
        return data, f"flip {count} bytes"
    if kind in ("overwrite", "zero"):
        size = rng.randint(1, max(1, length // 20))
        start = rng.randrange(max(1, length - size))
        data[start:start + size] = bytes(size) if kind == "zero" else rng.randbytes(size)
        return data, f"{kind} {size} bytes at {start}"
    if kind == "swap_boxes":
        groups = [group for group in box_tree(data) if len(group) >= 2]
        if groups:
            group = rng.choice(groups)
            first, second = sorted(rng.sample(range(len(group)), 2))
            (a_offset, a_size, a_kind), (b_offset, b_size, b_kind) = group[first], group[second]
            swapped = (data[:a_offset] + data[b_offset:b_offset + b_size] + data[a_offset + a_size:b_offset]
                       + data[a_offset:a_offset + a_size] + data[b_offset + b_size:])
            return bytearray(swapped), f"swap boxes {a_kind.decode('latin-1')} and {b_kind.decode('latin-1')}"
        size = rng.randint(188, max(189, length // 10))  # not MP4: two equal blocks (TS packets, chunks)
        if 2 * size >= length:
            return data, "too short to swap"
        first = rng.randrange(length - 2 * size)
        second = rng.randrange(first + size, length - size + 1)
        block = data[first:first + size]
        data[first:first + size] = data[second:second + size]
        data[second:second + size] = block
        return data, f"swap two {size}-byte blocks"
    if kind == "box_size":
        boxes = [box for group in box_tree(data) for box in group]
        if not boxes:
            return mutate(data, "flip", rng)
        offset, size, box_kind = rng.choice(boxes)
        new_size = rng.choice([0, 1, 7, size // 2, size * 2, 0xFFFFFFFF, rng.randrange(2**32)])
        data[offset:offset + 4] = struct.pack(">I", new_size & 0xFFFFFFFF)
        return data, f"size of {box_kind.decode('latin-1')} {size} -> {new_size}"
    raise ValueError(kind)


def make_variants(encodings: dict[str, Path], folder: Path, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    variants = []
    for index in range(count):
        base_name = rng.choice(sorted(encodings))
        data = bytearray(encodings[base_name].read_bytes())
        done, kinds = [], []
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.choices(MUTATIONS, MUTATION_WEIGHTS)[0]
            data, what = mutate(data, kind, rng)
            done.append(what)
            kinds.append(kind)
        path = folder / f"fuzz{index:03d}{Path(base_name).suffix}"
        path.write_bytes(bytes(data))
        variants.append({"id": f"fuzz{index:03d}", "base": base_name, "mutations": done, "kinds": kinds,
                         "bytes": len(data), "path": str(path)})
    return variants


def rss_megabytes(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Watch:
    """The good source's messages and the daemon's RSS, sampled in threads."""

    def __init__(self, endpoint: str, pid: int) -> None:
        self.good_times: list[float] = []
        self.rss: list[tuple[float, float]] = []
        self.messages = Counter()
        self._stop = threading.Event()
        self._pid = pid
        self._threads = [threading.Thread(target=self._receive, args=(endpoint,), daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _receive(self, endpoint: str) -> None:
        with Subscriber(endpoint) as subscriber:
            while not self._stop.is_set():
                message = subscriber.receive(0.1)
                if message is not None:
                    self.messages[message["source"]] += 1
                    if message["source"] == "good":
                        self.good_times.append(time.monotonic())

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            value = rss_megabytes(self._pid)
            if value is not None:
                self.rss.append((time.monotonic(), value))

    def good_rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.good_times) / max(1e-9, end - start)

    def good_rates_per_second(self, start: float, end: float) -> list[float]:
        return [float(sum(second <= t < second + 1 for t in self.good_times))
                for second in [start + i for i in range(int(end - start))]]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--variants", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--round-seconds", type=float, default=4.0)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the re-encodes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="", help="an ONNX model (default: a tiny constant-output YOLOX-layout "
                                                    "model, so inference costs next to nothing)")
    parser.add_argument("--json", default="")
    parser.add_argument("--keep", action="store_true", help="keep the folder of media and logs")
    parser.add_argument("--reuse-ids", action="store_true",
                        help="every round's sources take the same --per-round ids (fuzz000...), so the metrics hold "
                             "no more series as rounds go by: what memory does without that growth")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("needs ffmpeg", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="streamd-fuzz-"))
    encodings = make_encodings(Path(args.video), folder, args.seconds)
    variants = make_variants(encodings, folder, args.variants, args.seed)
    if args.reuse_ids:
        for index, variant in enumerate(variants):
            variant["id"] = f"fuzz{index % args.per_round:03d}"
    model = args.model
    if not model:
        from tests.support import write_tiny_yolox_model  # noqa: PLC0415

        planted = {0: (0.5, 0.5, 0.5, 0.5, 0.9, 0)}
        model = str(write_tiny_yolox_model(folder / "tiny.onnx", planted=planted))
        (folder / "tiny.names").write_text("a\nb\nc\n")
    publish_port, metrics_port = free_tcp_port(), free_tcp_port()
    good = {"id": "good", "kind": "file", "url": str(encodings["h264_faststart.mp4"]), "loop": True}

    def document(fuzz: list[dict]) -> dict:
        return {"sources": [good, *({"id": v["id"], "kind": "file", "url": v["path"], "loop": True} for v in fuzz)],
                "model": {"path": model}, "publish": {"endpoint": f"tcp://127.0.0.1:{publish_port}",
                                                      "send_hwm": 100000},
                "metrics": {"bind": f"127.0.0.1:{metrics_port}"}, "daemon": {"status_interval_seconds": 0}}

    config = folder / "fuzz.toml"
    config.write_text(toml_text(document([])))
    log_path = folder / "daemon.log"
    log = open(log_path, "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config)], stdout=log,
                              stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _ = get_json(metrics_port, "/readyz")
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or daemon.poll() is not None:
            print(log_path.read_text(), file=sys.stderr)
            return 1
        time.sleep(0.2)
    watch = Watch(f"tcp://127.0.0.1:{publish_port}", daemon.pid)
    time.sleep(2.0)  # the subscription reaches the publisher, the good source settles
    cpu_start = process_cpu_seconds_of(daemon.pid) or 0.0
    baseline_start = time.monotonic()
    time.sleep(args.baseline_seconds)
    baseline_end = time.monotonic()
    outcomes: dict[str, dict] = {}
    rounds = [variants[i:i + args.per_round] for i in range(0, len(variants), args.per_round)]
    reloads_sent = 0
    alive = True
    round_starts = []
    totals: dict[str, dict[str, float]] = {}
    for number, batch in enumerate(rounds):
        round_starts.append(round(time.monotonic() - baseline_start, 2))
        config.write_text(toml_text(document(batch)))
        daemon.send_signal(signal.SIGHUP)
        reloads_sent += 1
        time.sleep(args.round_seconds)
        if daemon.poll() is not None:
            alive = False
            break
        samples = scrape(metrics_port)
        for variant in batch:
            labels = (("source", variant["id"]),)
            states = [dict(key[1])["state"] for key, value in samples.items()
                      if key[0] == "streamd_source_state" and dict(key[1]).get("source") == variant["id"] and value]
            counts = {"frames_captured": samples.get(("streamd_frames_captured_total", labels), 0.0),
                      **{kind: samples.get(("streamd_source_errors_total",
                                            (("kind", kind), ("source", variant["id"]))), 0.0)
                         for kind in ("open", "read", "stall")}}
            before = totals.get(variant["id"], {})  # an id used before (--reuse-ids): this round's part
            totals[variant["id"]] = counts
            delta = {key: value - before.get(key, 0.0) for key, value in counts.items()}
            outcomes[variant["path"]] = {
                "frames_captured": delta["frames_captured"],
                "errors": {kind: delta[kind] for kind in ("open", "read", "stall")},
                "state": states[0] if states else None}
        print(f"round {number + 1}/{len(rounds)}: rss {rss_megabytes(daemon.pid) or 0:.0f} MB", flush=True)
    fuzz_end = time.monotonic()
    if alive:  # the good source alone again: does memory come back?
        config.write_text(toml_text(document([])))
        daemon.send_signal(signal.SIGHUP)
        reloads_sent += 1
        time.sleep(10.0)
    alone_end = time.monotonic()
    cpu_seconds = (process_cpu_seconds_of(daemon.pid) or 0.0) - cpu_start
    wall_seconds = time.monotonic() - baseline_start
    final_rss = rss_megabytes(daemon.pid)
    exit_status = None
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            exit_status = daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            exit_status = "killed after 20 s"
    else:
        exit_status = daemon.returncode
        alive = False
    watch.stop()
    log.close()
    text = log_path.read_text(errors="replace")
    warnings: dict[str, int] = defaultdict(int)
    for line in text.splitlines():
        match = re.search(r" (?:WARNING|ERROR) .*?source (fuzz\d{3})\b", line)
        if match:
            warnings[match.group(1)] += 1
    for variant in variants:
        variant.update(outcomes.get(variant["path"], {}))
        # Per source id: with --reuse-ids an id's lines and messages are those of all its rounds.
        variant["warning_lines"] = warnings.get(variant["id"], 0) if not args.reuse_ids else None
        variant["published"] = watch.messages.get(variant["id"], 0) if not args.reuse_ids else None
        variant.pop("path")
    baseline_rate = watch.good_rate(baseline_start, baseline_end)
    fuzz_rate = watch.good_rate(baseline_end, fuzz_end)
    fuzz_seconds = watch.good_rates_per_second(baseline_end, fuzz_end)
    rss_baseline = [value for when, value in watch.rss if baseline_start <= when < baseline_end]
    rss_fuzz = [value for when, value in watch.rss if when >= baseline_end]
    played = [v for v in variants if v.get("frames_captured")]
    refused = [v for v in variants if not v.get("frames_captured") and v.get("errors", {}).get("open")]
    report = {
        **provenance(),
        "settings": {"variants": args.variants, "per_round": args.per_round, "round_seconds": args.round_seconds,
                     "baseline_seconds": args.baseline_seconds, "seconds_of_video": args.seconds, "seed": args.seed,
                     "reuse_ids": args.reuse_ids,
                     "model": "tiny constant-output YOLOX-layout ONNX model" if not args.model else args.model,
                     "good_source": "vtest.avi re-encoded (H.264 MP4, 384x288, 10 fps), looping, paced"},
        "daemon_alive_throughout": alive,
        "exit_status_after_sigterm": exit_status,
        "reloads": reloads_sent,
        "good_fps_baseline": round(baseline_rate, 3),
        "good_fps_with_variants": round(fuzz_rate, 3),
        "good_fps_ratio": round(fuzz_rate / baseline_rate, 4) if baseline_rate else None,
        "good_fps_with_variants_worst_second": min(fuzz_seconds) if fuzz_seconds else None,
        "rss_mb": {"baseline_max": round(max(rss_baseline), 1) if rss_baseline else None,
                   "with_variants_max": round(max(rss_fuzz), 1) if rss_fuzz else None,
                   "after_variants": round(final_rss, 1) if final_rss else None},
        "daemon_cpu_cores": round(cpu_seconds / wall_seconds, 3) if wall_seconds else None,
        # Seconds from the baseline's start: when each round's reload was sent; the good source's messages
        # in each second; RSS every 2 s.
        "round_starts_seconds": round_starts,
        "good_messages_per_second": watch.good_rates_per_second(baseline_start, alone_end),
        "rss_mb_series": [[round(when - baseline_start, 1), round(value, 1)]
                          for when, value in watch.rss[::4] if when >= baseline_start],
        "outcomes": {"played_some_frames": len(played), "refused_counted_as_open_errors": len(refused),
                     "neither": len(variants) - len(played) - len(refused),
                     "states": dict(Counter(str(v.get("state")) for v in variants)),
                     "warning_lines_per_variant": None if args.reuse_ids else dict(sorted(Counter(
                         v["warning_lines"] for v in variants).items())),
                     "most_warning_lines": None if args.reuse_ids else max(
                         (v["warning_lines"] for v in variants), default=0)},
        "mutations": dict(Counter(kind for v in variants for kind in v["kinds"])),
        "variants": variants,
    }
    print(json.dumps({k: v for k, v in report.items()
                      if k not in ("variants", "machine", "versions", "good_messages_per_second", "rss_mb_series")},
                     indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"media and log kept in {folder}")
    ok = alive and exit_status == 0 and report["good_fps_ratio"] is not None and report["good_fps_ratio"] >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

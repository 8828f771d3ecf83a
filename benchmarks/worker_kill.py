#!/usr/bin/env python3
"""SIGKILL one worker of a loaded service, again and again: how soon its cameras publish again, and
whether any other camera misses a frame or slows down meanwhile.

    python benchmarks/worker_kill.py --model yolox_nano.onnx --video vtest_1080p30.mp4 --streams 72 \\
        --workers 3 --decoder nvdec --standin-engine --kills 5 --json kill.json

Runs `streamd run` with N looping file sources over K workers, a subscriber on its endpoint; after a
warm-up, every --interval seconds kills the next worker (round robin). Per kill: seconds until each
of the victim's cameras published again; over the run, frame-index gaps and frame age p99 of the
cameras whose worker was not being killed. For comparison, the same counts over every camera in the
--interval seconds before the first kill (the load's own drops, with no kill).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import provenance  # noqa: E402
from streamd.bench.supervised import free_tcp_port, get_json, toml_text  # noqa: E402
from streamd.publish.message import decode  # noqa: E402
from streamd.publish.subscriber import Subscriber  # noqa: E402


def dropped_by_source(metrics_port: int) -> dict[str, dict[str, float]]:
    """``streamd_frames_dropped_total`` of the one scrape, by source then reason: why a gap happened (a frame
    superseded in its slot or too old; a gap with neither was lost after inference)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        if family.name == "streamd_frames_dropped":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["source"]][sample.labels["reason"]] = sample.value
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decoder", default="opencv")
    parser.add_argument("--standin-engine", action="store_true")
    parser.add_argument("--max-batch", type=int, default=0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--interval", type=float, default=12.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    publish_port, metrics_port = free_tcp_port(), free_tcp_port()
    gpu = args.standin_engine or args.decoder == "nvdec"
    model = {"path": args.model, "max_batch": args.max_batch or (max(2, args.streams // args.workers) if gpu else 1)}
    if gpu:
        model.update(backend="tensorrt", layout="yolox")
    document = {"sources": [{"id": f"cam{i:03d}", "kind": "file", "url": args.video, "loop": True,
                             "decoder": args.decoder} for i in range(args.streams)],
                "model": model, "publish": {"endpoint": f"tcp://127.0.0.1:{publish_port}", "send_hwm": 100000},
                "metrics": {"bind": f"127.0.0.1:{metrics_port}"},
                "daemon": {"workers": args.workers, "status_interval_seconds": 0}}
    folder = Path(tempfile.mkdtemp(prefix="streamd-kill-"))
    (folder / "kill.toml").write_text(toml_text(document))
    env = {**os.environ, **({"STREAMD_BENCH_STANDIN_ENGINE": "1"} if args.standin_engine else {})}
    log = open(folder / "service.log", "wb")  # noqa: SIM115
    service = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(folder / "kill.toml")],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    received: list[tuple[float, list[bytes]]] = []
    stop = threading.Event()

    def receive() -> None:
        with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
            while not stop.is_set():
                parts = subscriber.receive_parts(0.1)
                if parts is not None:
                    received.append((time.monotonic(), parts))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    kills = []
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                status, detail = get_json(metrics_port, "/readyz")
            except (OSError, ValueError):
                status, detail = 0, {}
            if status == 200 and all(s == "streaming" for s in detail["sources"].values()):
                break
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"service not ready: {(folder / 'service.log').read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(args.warmup_seconds)
        workers_at_start = get_json(metrics_port, "/healthz")[1]["workers"]
        start = time.monotonic()
        for number in range(args.kills):
            workers = get_json(metrics_port, "/healthz")[1]["workers"]
            victim = workers[str(number % args.workers)]
            dropped_before = dropped_by_source(metrics_port)
            killed_at = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            kills.append({"worker": number % args.workers, "pid": victim["pid"], "sources": victim["sources"],
                          "killed_at": killed_at,
                          "killed_at_unix": time.time(), "dropped_before": dropped_before})
            time.sleep(args.interval)
        end = time.monotonic()
        dropped_at_end = dropped_by_source(metrics_port)
    finally:
        stop.set()
        thread.join(2)
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        log.close()
    control_start = start - min(args.interval, args.warmup_seconds)
    messages = [(at, decode(parts)) for at, parts in received if control_start <= at <= end]
    by_source = defaultdict(list)
    for at, message in messages:
        by_source[message["source"]].append((at, message))
    for kill in kills:
        back = []
        for source in kill["sources"]:
            after = [at for at, _ in by_source[source] if at > kill["killed_at"] + 0.05]
            back.append(after[0] - kill["killed_at"] if after else None)
        kill["seconds_until_published_again"] = back
        kill["worst_seconds"] = max((b for b in back if b is not None), default=None)
    def gaps_in(indices: list[int]) -> int:
        return sum(1 for a, b in zip(indices, indices[1:]) if b != a + 1)

    control = [[m["frame_index"] for at, m in items if control_start <= at < start] for items in by_source.values()]
    # While a worker is down (from its kill to the next kill), the other workers' cameras must not skip.
    gaps, ages, checked, frames, gap_seconds, gap_details = 0, [], 0, 0, [], []
    worker_of = {source: int(index) for index, worker in workers_at_start.items() for source in worker["sources"]}
    dropped_untouched: dict[str, float] = defaultdict(float)
    for number, kill in enumerate(kills):
        until = kills[number + 1]["killed_at"] if number + 1 < len(kills) else end
        dropped_after = kills[number + 1]["dropped_before"] if number + 1 < len(kills) else dropped_at_end
        for source, items in by_source.items():
            if source in kill["sources"]:
                continue
            window = [(at, m) for at, m in items if kill["killed_at"] <= at <= until]
            indices = [m["frame_index"] for _, m in window]
            gaps += gaps_in(indices)
            for reason, count in dropped_after.get(source, {}).items():
                dropped_untouched[reason] += count - kill["dropped_before"].get(source, {}).get(reason, 0.0)
            # When each gap was seen, after its kill: tells a take-over's cost from the new standby's start.
            for i in range(len(window) - 1):
                if indices[i + 1] == indices[i] + 1:
                    continue
                gap_seconds.append(round(window[i + 1][0] - kill["killed_at"], 2))
                # Capture spacing tells a burst from the source (two frames close together, the first
                # replaced) from a stalled pipeline (regular capture, a late publish).
                before, after = window[i][1], window[i + 1][1]
                gap_details.append({"kill": number, "source": source, "worker": worker_of.get(source),
                                    "seconds_after_kill": round(window[i + 1][0] - kill["killed_at"], 3),
                                    "missing_frames": indices[i + 1] - indices[i] - 1,
                                    "capture_spacing_seconds": round(after["capture_time"] - before["capture_time"], 4),
                                    "publish_spacing_seconds": round(after["publish_time"] - before["publish_time"], 4),
                                    "age_before_seconds": round(before["publish_time"] - before["capture_time"], 4),
                                    "age_after_seconds": round(after["publish_time"] - after["capture_time"], 4)})
            frames += len(indices)
            ages += [m["publish_time"] - m["capture_time"] for _, m in window]
            checked += 1
    result = {**provenance(), "settings": vars(args), "kills": kills,
              "untouched_source_windows": checked, "untouched_frames": frames, "untouched_frame_index_gaps": gaps,
              "untouched_gap_seconds_after_kill": sorted(gap_seconds),
              "untouched_frames_dropped_by_reason": dict(dropped_untouched),
              "untouched_gaps": gap_details,
              "before_kills": {"seconds": round(start - control_start, 1), "frames": sum(map(len, control)),
                               "frame_index_gaps": sum(gaps_in(indices) for indices in control)},
              "untouched_frame_age_p99_seconds": float(np.percentile(ages, 99)) if ages else None,
              "worst_seconds_until_published_again": max((k["worst_seconds"] or 0.0) for k in kills) if kills else None}
    for kill in kills:
        del kill["dropped_before"]
    print(json.dumps({k: v for k, v in result.items() if k not in ("kills", "untouched_gaps")}, indent=1, default=str))
    for gap in gap_details[:40]:
        print("gap", json.dumps(gap))
    for kill in kills:
        print(f"kill worker {kill['worker']}: {len(kill['sources'])} cameras back within "
              f"{kill['worst_seconds'] if kill['worst_seconds'] is None else round(kill['worst_seconds'], 2)} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

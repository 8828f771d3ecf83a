#!/usr/bin/env python3
"""Line counts and track scores of the daemon on held-out synthetic scenes, at native pace and under drops.

    python benchmarks/synthetic_counts.py --seeds $(seq 321 360) --frames 300 \\
        --json benchmarks/results/cpu-2core_synthetic-counts.json

Runs ``streamd.evaluation.count_accuracy`` twice: the cameras at their pace (10 fps), then with every
detector call ``--delay-ms`` slower, so frames are superseded and the tracker and the lines see gaps.
Each run gives the tracks' MOT scores (IDF1, MOTA, ID switches per 100 ground-truth tracks) and, per
scene, line and direction, the daemon's count against the true crossings of the scene's object paths.
Writes both after the commit, machine, command and versions (``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

from record import provenance

from streamd.evaluation.count_accuracy import daemon_messages, score_run


def summary(run: dict) -> str:
    tracking, counts = run["tracking"], run["counts"]
    return (f"frames {run['frames_received']}/{run['frames_sent']}, IDF1 {tracking['idf1']:.3f}, "
            f"switches {int(tracking['num_switches'])} ({tracking['idsw_per_100_tracks']:.2f} per 100 tracks), "
            f"crossings {counts['counted']}/{counts['true_crossings']}, error {counts['absolute_error']}, "
            f"exact scenes {counts['scenes_exact']}/{counts['scenes']} "
            f"({counts['scenes_without_switch_exact']}/{counts['scenes_without_switch']} without a switch)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=150.0, help="the slower detector of the drops run")
    parser.add_argument("--only", choices=("native", "drops"), help="one of the two runs")
    parser.add_argument("--messages", metavar="FOLDER",
                        help="also keep each run's messages there (NAME.jsonl.gz), to score them again")
    parser.add_argument("--rescore", metavar="FOLDER", help="score the messages kept there instead of running")
    parser.add_argument("--json")
    args = parser.parse_args()
    runs = {}
    for name, delay_ms in (("native", 0.0), ("drops", args.delay_ms)):
        if args.only not in (None, name):
            continue
        started = time.monotonic()
        if args.rescore:
            with gzip.open(Path(args.rescore) / f"{name}.jsonl.gz", "rt") as kept:
                messages = [json.loads(line) for line in kept]
        else:
            messages = daemon_messages(args.seeds, args.frames, inference_delay_seconds=delay_ms / 1000)
            if args.messages:
                Path(args.messages).mkdir(parents=True, exist_ok=True)
                with gzip.open(Path(args.messages) / f"{name}.jsonl.gz", "wt") as kept:
                    kept.writelines(json.dumps(message) + "\n" for message in messages)
        runs[name] = {"seeds": args.seeds, "frames_per_seed": args.frames, "fps": 10.0,
                      "inference_delay_seconds": delay_ms / 1000, **score_run(messages, args.seeds, args.frames),
                      "seconds": round(time.monotonic() - started, 1)}
        print(f"{name}: {summary(runs[name])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({**provenance(), **runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

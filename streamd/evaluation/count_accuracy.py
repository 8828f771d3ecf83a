"""Line counts of the running daemon against the truth of synthetic scenes, and its tracks' scores, from one run.

The daemon (``streamd.daemon.service.Service``) runs synthetic sources with the same lines on each; a
ZeroMQ subscriber takes the detections and the events messages. The true crossings come from the scene's
own object paths (``SyntheticScene``: every object's box in every frame, with its identity): an object's
bottom-centre point (the lines' default anchor) changing side between two frames, the crossing point
between the line's end points. Every frame of the scene counts, published or not, so frames superseded
under load show up as count errors.

    python -m streamd.evaluation.count_accuracy --seeds $(seq 321 360) --frames 300
    python -m streamd.evaluation.count_accuracy --seeds $(seq 321 360) --frames 300 --inference-delay-ms 150

Per line and direction of each scene: the true count and the daemon's; over all, the total absolute error
against the true crossings, the scenes whose every count is exact, and the same over the scenes where the
tracker made no ID switch (motmetrics, as ``streamd.evaluation.tracking_accuracy`` scores them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamd.evaluation.mot_metrics import FrameTracks, clear_and_identity, score_tracks
from streamd.evaluation.tracking_accuracy import collect_messages
from streamd.sources.synthetic import GroundTruth, SyntheticScene

WIDTH, HEIGHT = 640, 480
# Name -> (start, end) in pixels: across the middle, down the middle (both from edge to edge), and a
# diagonal segment whose end points lie inside the picture (crossings beyond them do not count).
LINES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "across": ((0.0, 240.0), (640.0, 240.0)),
    "down": ((320.0, 0.0), (320.0, 480.0)),
    "diagonal": ((100.0, 100.0), (540.0, 380.0)),
}
DIRECTIONS = ("in", "out")


def scene_truth(seed: int, frames: int, width: int = WIDTH, height: int = HEIGHT) -> list[GroundTruth]:
    """Every frame's truth of a scene (rendering is the slow part: do it once per scene)."""
    scene = SyntheticScene(seed, width, height)
    return [scene.render(index)[1] for index in range(frames)]


def crossings_of(truths: Sequence[GroundTruth], start: tuple[float, float],
                 end: tuple[float, float]) -> dict[str, int]:
    """The crossings of the segment by each true object's bottom-centre path, straight from frame to frame;
    inside is left of start -> end on the picture (the lines' default ``in_side``). An anchor exactly on
    the line keeps the side it had."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    last: dict[int, tuple[float, float]] = {}
    counts = {"in": 0, "out": 0}
    for truth in truths:
        for (bx1, _, bx2, by2), track_id in zip(truth.boxes_xyxy.tolist(), truth.track_ids.tolist()):
            ax, ay = (bx1 + bx2) / 2, by2
            distance = dy * (ax - x1) - dx * (ay - y1)
            along = (dx * (ax - x1) + dy * (ay - y1)) / (dx * dx + dy * dy)
            if distance == 0:
                continue
            if track_id in last:
                d0, t0 = last[track_id]
                if d0 * distance < 0 and 0 <= t0 + (along - t0) * d0 / (d0 - distance) <= 1:
                    counts["in" if distance > 0 else "out"] += 1
            last[track_id] = (distance, along)
    return counts


def true_crossings(seed: int, frames: int, start: tuple[float, float], end: tuple[float, float],
                   width: int = WIDTH, height: int = HEIGHT) -> dict[str, int]:
    """``crossings_of`` the first ``frames`` frames of scene ``seed``."""
    return crossings_of(scene_truth(seed, frames, width, height), start, end)


def count_config_text(seeds: Sequence[int], frames_per_seed: int, fps: float,
                      lines: Mapping[str, tuple[tuple[float, float], tuple[float, float]]] = LINES) -> str:
    """Synthetic sources at their native pace, each with ``lines``, the built-in model, metrics off."""
    line_text = "".join(f'[[sources.lines]]\nname = "{name}"\npoints = [[{a[0]}, {a[1]}], [{b[0]}, {b[1]}]]\n\n'
                        for name, (a, b) in lines.items())
    sources = "".join(
        f'[[sources]]\nid = "seed-{seed}"\nkind = "synthetic"\npace = "native"\nfps = {fps}\nseed = {seed}\n'
        f"width = {WIDTH}\nheight = {HEIGHT}\nmax_frames = {frames_per_seed}\n\n{line_text}" for seed in seeds)
    hwm = max(1000, 4 * frames_per_seed * len(seeds))
    return (f'{sources}[model]\npath = "builtin:synthetic-shapes"\nbackend = "onnxruntime"\n\n'
            f'[publish]\nendpoint = "tcp://127.0.0.1:*"\nsend_hwm = {hwm}\n\n[metrics]\nenabled = false\n')


def score_counts(messages: Sequence[Mapping[str, Any]], seeds: Sequence[int], frames_per_seed: int,
                 lines: Mapping[str, tuple[tuple[float, float], tuple[float, float]]] = LINES,
                 switches: Mapping[int, int] | None = None,
                 truths: Mapping[int, Sequence[GroundTruth]] | None = None) -> dict[str, Any]:
    """Counts from the events messages against the truth, per scene and over all. ``switches``: ID switches
    per seed, to report the scenes tracked without one apart; ``truths``: each seed's ``scene_truth``
    (rendered here where not given)."""
    counted = {(seed, name, direction): 0 for seed in seeds for name in lines for direction in DIRECTIONS}
    for message in messages:
        for event in message.get("events", ()):
            if event["type"] == "line_cross":
                counted[(int(message["source"].removeprefix("seed-")), event["line"], event["direction"])] += 1
    scenes = []
    for seed in seeds:
        scene = truths[seed] if truths is not None else scene_truth(seed, frames_per_seed)
        truth = {name: crossings_of(scene, *points) for name, points in lines.items()}
        errors = {f"{name}/{direction}": counted[(seed, name, direction)] - truth[name][direction]
                  for name in lines for direction in DIRECTIONS}
        scenes.append({"seed": seed, "true_crossings": sum(sum(t.values()) for t in truth.values()),
                       "counted": sum(counted[(seed, name, d)] for name in lines for d in DIRECTIONS),
                       "absolute_error": sum(abs(e) for e in errors.values()), "errors": errors,
                       "id_switches": None if switches is None else switches.get(seed, 0)})
    total_true = sum(scene["true_crossings"] for scene in scenes)
    total_error = sum(scene["absolute_error"] for scene in scenes)
    clean = [scene for scene in scenes if scene["id_switches"] == 0]
    return {"scenes": len(scenes), "true_crossings": total_true,
            "counted": sum(scene["counted"] for scene in scenes), "absolute_error": total_error,
            "absolute_error_share": total_error / total_true if total_true else None,
            "scenes_exact": sum(scene["absolute_error"] == 0 for scene in scenes),
            "scenes_without_switch": len(clean), "scenes_without_switch_exact": sum(s["absolute_error"] == 0
                                                                                    for s in clean),
            "per_scene": scenes}


def tracked_sequences(messages: Sequence[Mapping[str, Any]],
                      truths: Mapping[int, Sequence[GroundTruth]]) -> dict[str, list[FrameTracks]]:
    """Each scene's published tracks beside its truth, frame by published frame (as ``score_messages``)."""
    sequences: dict[str, list[FrameTracks]] = {str(seed): [] for seed in truths}
    for message in sorted(messages, key=lambda m: (m["source"], m["frame_index"])):
        seed = int(message["source"].removeprefix("seed-"))
        truth = truths[seed][int(message["frame_index"])]
        tracked = [d for d in message["detections"] if d.get("track_id") is not None]
        sequences[str(seed)].append(FrameTracks(
            truth.track_ids, truth.boxes_xyxy, np.array([d["track_id"] for d in tracked], np.int64),
            np.array([d["box"] for d in tracked], np.float64).reshape(-1, 4)))
    return sequences


def daemon_messages(seeds: Sequence[int], frames_per_seed: int = 300, fps: float = 10.0,
                    inference_delay_seconds: float = 0.0, sources_per_run: int = 2) -> list[dict[str, Any]]:
    """Every message the daemon published on ``seeds`` (``sources_per_run`` at a time, as tracking_accuracy
    runs them), detections and events."""
    messages: list[dict[str, Any]] = []
    for first in range(0, len(seeds), sources_per_run):
        group = seeds[first:first + sources_per_run]
        # Events messages come on top of the frames': collect until the sources have ended.
        messages += collect_messages(count_config_text(group, frames_per_seed, fps), 10 * frames_per_seed * len(group),
                                     inference_delay_seconds)
    if not any("detections" in message for message in messages):
        raise RuntimeError("no message received from the daemon")
    return messages


def daemon_count_accuracy(seeds: Sequence[int], frames_per_seed: int = 300, fps: float = 10.0,
                          inference_delay_seconds: float = 0.0, sources_per_run: int = 2) -> dict[str, Any]:
    """Run the daemon on ``seeds``, score its tracks and its line counts."""
    started = time.monotonic()
    messages = daemon_messages(seeds, frames_per_seed, fps, inference_delay_seconds, sources_per_run)
    return {"seeds": list(seeds), "frames_per_seed": frames_per_seed, "fps": fps,
            "inference_delay_seconds": inference_delay_seconds, **score_run(messages, seeds, frames_per_seed),
            "seconds": round(time.monotonic() - started, 1)}


def score_run(messages: Sequence[Mapping[str, Any]], seeds: Sequence[int], frames_per_seed: int) -> dict[str, Any]:
    """A run's messages scored: frames received and skipped, the tracks' MOT scores, the line counts."""
    detections = [message for message in messages if "detections" in message]
    truths = {seed: scene_truth(seed, frames_per_seed) for seed in seeds}
    sequences = tracked_sequences(detections, truths)
    tracking = dict(score_tracks(sequences))
    switches = {int(name): int(clear_and_identity({name: frames})["num_switches"]) if frames else 0
                for name, frames in sequences.items()}
    ordered = sorted(detections, key=lambda m: (m["source"], m["frame_index"]))
    gaps = [b["frame_index"] - a["frame_index"] - 1 for a, b in zip(ordered, ordered[1:]) if a["source"] == b["source"]]
    counts = score_counts(messages, seeds, frames_per_seed, switches=switches, truths=truths)
    return {"lines": {name: [list(a), list(b)] for name, (a, b) in LINES.items()},
            "frames_sent": frames_per_seed * len(seeds), "frames_received": len(detections),
            "frames_skipped": int(sum(gaps)), "tracking": tracking, "counts": counts}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Line counts and MOT scores of the daemon on synthetic scenes")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--frames", type=int, default=300, help="frames per seed")
    parser.add_argument("--fps", type=float, default=10.0, help="each source's native rate")
    parser.add_argument("--sources-per-run", type=int, default=2, help="scenes run by one daemon at a time")
    parser.add_argument("--inference-delay-ms", type=float, default=0.0,
                        help="make every detector call this much slower (frames are then superseded)")
    args = parser.parse_args(argv)
    result = daemon_count_accuracy(args.seeds, args.frames, args.fps, args.inference_delay_ms / 1000,
                                   args.sources_per_run)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

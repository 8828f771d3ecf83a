"""Does batching pay on ONNX Runtime (CPU)? Frames per second of one model at batch 1 and batch N,
measured side by side in one process, alternating rounds, so a noisy machine hits every variant alike.

Layouts compared (batch 1 and batch B back to back, order alternating per round; the ratio of
each pair is taken, and its quartiles over the rounds reported):
  1x{T}t bB: one session with T intra-op threads running batches of B
  2x1t bB:   two 1-thread sessions on two Python threads, each running batches of B (the daemon's
             CPU default is this layout at B = 1)

    python benchmarks/ort_batch_bench.py --model ../shared/models/yolox_nano.onnx --batches 1 2 4 8
Prints, per layout and batch, median fps of both and the quartiles of the per-pair fps ratio.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from streamd.inference.fold_preprocessing import fold_preprocessing
from streamd.inference.onnx_batch import make_batch_dynamic
from streamd.yolox.preprocess import YOLOX


def _session(model_bytes: bytes, threads: int):
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _frames_per_second(sessions: list, inputs: dict[int, np.ndarray], batch: int, seconds: float) -> float:
    """Run every session on its own thread for ``seconds``; total frames per second."""
    name = sessions[0].get_inputs()[0].name
    feed = inputs[batch]
    counts = [0] * len(sessions)
    stop = threading.Event()

    def loop(index: int) -> None:
        session = sessions[index]
        while not stop.is_set():
            session.run(None, {name: feed})
            counts[index] += batch

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(sessions))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def pipeline_ratios(args: argparse.Namespace) -> None:
    """The whole daemon in-process (bench's run_pipeline: capture threads, workers, publisher, a real
    subscriber) over ``--streams`` fast file sources, max_batch 1 against each batch, paired rounds."""
    from streamd.bench.run import run_pipeline  # noqa: PLC0415
    from streamd.config.schema import Config, MetricsConfig, ModelConfig, PublishConfig, SourceConfig  # noqa: PLC0415

    classes = tuple(f"class{i}" for i in range(80))
    sources = tuple(SourceConfig(id=f"cam{i}", kind="file", url=args.media, pace="fast", max_frames=args.frames)
                    for i in range(args.streams))

    def fps(batch: int) -> float:
        config = Config(sources, ModelConfig(path=args.model, classes=classes, max_batch=batch),
                        PublishConfig(endpoint="tcp://127.0.0.1:*"), MetricsConfig(enabled=False))
        return run_pipeline(config, args.streams * args.frames, 120.0)[0]

    base = args.batches[0]
    print(f"pipeline, {args.streams} fast file sources x {args.frames} frames, default workers/threads")
    for batch in args.batches[1:]:
        pairs = []
        for round_index in range(args.rounds):
            order = (base, batch) if round_index % 2 == 0 else (batch, base)
            result = {b: fps(b) for b in order}
            pairs.append((result[base], result[batch]))
        ratios = sorted(n / one for one, n in pairs)
        q = statistics.quantiles(ratios, n=4)
        print(f"max_batch {batch}: fps b{base} {statistics.median(p[0] for p in pairs):.1f}, "
              f"b{batch} {statistics.median(p[1] for p in pairs):.1f}, ratio p25/p50/p75 "
              f"{q[0]:.3f} / {statistics.median(ratios):.3f} / {q[2]:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.4, help="per variant per round")
    parser.add_argument("--pipeline", action="store_true", help="the whole daemon in-process instead")
    parser.add_argument("--media", help="--pipeline: the video every source reads")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60, help="--pipeline: frames per source")
    args = parser.parse_args()
    if args.pipeline:
        pipeline_ratios(args)
        return

    import onnx  # noqa: PLC0415

    dynamic = make_batch_dynamic(onnx.load(args.model))
    model_bytes = fold_preprocessing(args.model, YOLOX, model=dynamic)
    probe = _session(model_bytes, 1)
    height, width = probe.get_inputs()[0].shape[1:3]
    rng = np.random.default_rng(0)
    inputs = {b: rng.integers(0, 255, (b, height, width, 3), dtype=np.uint8) for b in args.batches}
    layouts = {"1x1t": [_session(model_bytes, 1)], "1x2t": [_session(model_bytes, 2)],
               "2x1t": [_session(model_bytes, 1), _session(model_bytes, 1)]}
    base = args.batches[0]
    print(f"{'layout':>6} {'batch':>5} {'fps b' + str(base):>9} {'fps bN':>8} {'ratio p25':>9} {'p50':>6} {'p75':>6}")
    for layout, sessions in layouts.items():
        for batch in args.batches[1:]:
            _frames_per_second(sessions, inputs, base, 0.2)  # warm-up
            _frames_per_second(sessions, inputs, batch, 0.2)
            pairs = []
            for round_index in range(args.rounds):
                # Back to back, order alternating: both see the same load on a noisy machine.
                order = (base, batch) if round_index % 2 == 0 else (batch, base)
                fps = {b: _frames_per_second(sessions, inputs, b, args.seconds) for b in order}
                pairs.append((fps[base], fps[batch]))
            ratios = sorted(n / one for one, n in pairs)
            q = statistics.quantiles(ratios, n=4)
            print(f"{layout:>6} {batch:>5} {statistics.median(p[0] for p in pairs):9.1f} "
                  f"{statistics.median(p[1] for p in pairs):8.1f} {q[0]:9.3f} {statistics.median(ratios):6.3f} "
                  f"{q[2]:6.3f}", flush=True)

if __name__ == "__main__":
    main()

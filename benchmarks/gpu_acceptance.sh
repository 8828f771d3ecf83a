#!/usr/bin/env bash
# The many-cameras-per-GPU acceptance run in one go, on a host with one or two NVIDIA GPUs, inside
# ACCEPTANCE_BUDGET_SECONDS (530 s):
#   1. python -m pytest -q tests/gpu (incl. the daemon with NVDEC sources on device 0 and 1, pipelined batches
#      = synchronous ones, NVDEC vs OpenCV-decode fidelity mAP@0.5:0.95 >= 0.95 -> nvdec_fidelity.json)
#   1b. streamd doctor, and benchmarks/gpu_zero_copy_check.py -> gpu_zero_copy_check.json
#   2. streamd bench --streams --sweep on GPU 0 (NVDEC 1080p30 H.264 cameras, stand-in engine) -> sweep_gpu0.*
#   3. several daemons at once, N streams each (N = step 2's largest, then 0.9 N if one misses real time):
#      two GPUs with one daemon each (model.device 0 and 1) -> two_gpus.json; one GPU with two daemons ->
#      one_gpu_two_daemons.json; two GPUs with two daemons each -> two_gpus_four_daemons.json. Ratios two GPUs /
#      one GPU (target >= 1.8) for one and for two daemons per GPU.
#   4. one daemon without tracking at 1.25 x step 2's answer (what tracking's host time costs), if time is left
# Everything lands in $OUT (default ./out): acceptance.log, the JSON above, sweep_gpu0.png, and summary.json
# (the key numbers, after the commit, machine, command and versions from benchmarks/record.py).
#
# Run from the repository root on the GPU machine:
#   bash benchmarks/gpu_acceptance.sh
#   CASES="16:0,0,0 20:0,0,0" SKIP_PYTEST=1 bash benchmarks/gpu_acceptance.sh   # only these daemons-at-once cases
# Needs PyNvVideoCodec 2.2.4, pyzmq, torch, onnx and cuda-python (wheels in WHEELS_DIR, default .whl, are
# installed into /tmp/site first, for a machine without a package index), and in $STREAMD_SHARED (default
# ../shared): models/yolox_nano.onnx, models/coco_classes.txt, media/vtest.avi, media/vtest_1080p30.mp4 (make it
# with: streamd bench --make-test-video $STREAMD_SHARED/media/vtest_1080p30.mp4 --source
# $STREAMD_SHARED/media/vtest.avi). STREAMD_H264_RESCHANGE, optional: an H.264 stream that changes from 1080p to
# 720p (tests/gpu/test_nvdec.py). A sweep run takes 15-25 s.
# Environment knobs: ACCEPTANCE_BUDGET_SECONDS (530), SWEEP_START (32), SWEEP_MAX (128), BENCH_SECONDS (5),
# BATCH_WINDOW (0.004), MAX_BATCH (32), SKIP_PYTEST (set: no step 1), WHEELS_DIR (.whl), CASES (see step 3), OUT.
set -u
START=$(date +%s)
BUDGET=${ACCEPTANCE_BUDGET_SECONDS:-530}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
LOG=$OUT/acceptance.log
exec > >(tee -a "$LOG") 2>&1

elapsed() { echo $(( $(date +%s) - START )); }
# step_timeout CAP RESERVE: CAP seconds, or less so that RESERVE seconds stay for the steps after this one.
step_timeout() {
    local left=$(( BUDGET - $(elapsed) - $2 ))
    if (( left < $1 )); then echo $(( left > 5 ? left : 5 )); else echo "$1"; fi
}
say() { echo "== [$(elapsed) s] $*"; }

say "installing carried wheels"
WHEELS=${WHEELS_DIR:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    echo "no $WHEELS/*.whl: PyNvVideoCodec and pyzmq must already be installed"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
export STREAMD_SHARED=${STREAMD_SHARED:-$(cd .. && pwd)/shared}
export STREAMD_H264_VIDEO=${STREAMD_H264_VIDEO:-$STREAMD_SHARED/media/vtest_1080p30.mp4}
export STREAMD_H264_RESCHANGE=${STREAMD_H264_RESCHANGE:-}
export STREAMD_GPU_REPORT_DIR=$OUT
# The command line, with the knobs set, for the summary's provenance.
COMMAND="bash benchmarks/gpu_acceptance.sh"
for knob in CASES SKIP_PYTEST BENCH_SECONDS BATCH_WINDOW MAX_BATCH SWEEP_START SWEEP_MAX ACCEPTANCE_BUDGET_SECONDS; do
    if [ -n "${!knob:-}" ]; then COMMAND="$knob='${!knob}' $COMMAND"; fi
done
MODEL=$STREAMD_SHARED/models/yolox_nano.onnx
VIDEO=$STREAMD_H264_VIDEO
for needed in "$MODEL" "$VIDEO" "$STREAMD_SHARED/media/vtest.avi"; do
    [ -f "$needed" ] || { echo "missing $needed (see the header of $0)"; exit 1; }
done
nvidia-smi -L
GPUS=$(nvidia-smi -L | grep -c '^GPU')
python3 -c 'import PyNvVideoCodec, zmq, torch; print("PyNvVideoCodec", PyNvVideoCodec.__file__, "zmq", zmq.__version__, "torch", torch.__version__)'

BENCH=(python3 -m streamd bench --decoder nvdec --standin-engine --model "$MODEL" --video "$VIDEO"
       --seconds "${BENCH_SECONDS:-5}" --warmup-seconds 2 --batch-window "${BATCH_WINDOW:-0.004}"
       --max-batch "${MAX_BATCH:-32}")

# 1. GPU tests --------------------------------------------------------------------------------------------
if [ -n "${SKIP_PYTEST:-}" ]; then
    say "pytest tests/gpu skipped (SKIP_PYTEST)"; PYTEST_RC=-1
else
    say "pytest tests/gpu"
    timeout "$(step_timeout 170 330)" python3 -m pytest -q -rs -p no:cacheprovider tests/gpu
    PYTEST_RC=$?
fi
say "pytest rc $PYTEST_RC"

if [ -z "${CASES:-}" ]; then
# 1b. streamd doctor, and zero-copy (mapped host memory) forced vs the copy path on a discrete GPU ----------------
say "streamd doctor"
timeout 30 python3 -m streamd.cli doctor
say "gpu_zero_copy_check"
timeout "$(step_timeout 60 300)" python3 benchmarks/gpu_zero_copy_check.py --model "$MODEL" \
    --video "$STREAMD_SHARED/media/vtest.avi" --out "$OUT/gpu_zero_copy_check.json"
say "zero-copy check rc $? (0: identical detections)"
fi

ONE_GPU=0
if [ -z "${CASES:-}" ]; then
# 2. sweep on GPU 0 ---------------------------------------------------------------------------------------
say "bench --sweep on GPU 0"
timeout "$(step_timeout 200 110)" "${BENCH[@]}" --device 0 --streams "${SWEEP_START:-32}" --sweep \
    --max-streams "${SWEEP_MAX:-128}" --json "$OUT/sweep_gpu0.json" --plot "$OUT/sweep_gpu0.png" \
    | tee "$OUT/.sweep.txt"
say "sweep rc ${PIPESTATUS[0]}"
ONE_GPU=$(python3 - "$OUT/sweep_gpu0.json" "$OUT/.sweep.txt" <<'EOF'
import json, re, sys
try:  # the bench's own answer
    print((json.load(open(sys.argv[1])).get("sweep") or {}).get("largest_streams_at_real_time") or 0)
except (OSError, ValueError):  # cut short by its timeout: the largest N whose printed run was at real time
    runs = re.findall(r"^\s*(\d+) streams .*?(NOT real time|real time)", open(sys.argv[2]).read(), re.M)
    passed = [int(n) for n, verdict in runs if verdict == "real time"]
    failed = [int(n) for n, verdict in runs if verdict != "real time"]
    print(max([n for n in passed if all(n < f for f in failed)], default=0))
EOF
)
rm -f "$OUT/.sweep.txt"
say "one GPU: $ONE_GPU streams at real time"
fi

# 3. several daemons at once ------------------------------------------------------------------------------
# One daemon is limited by its own Python host time per frame (capture threads, collector, publishing share
# one interpreter lock), not by the GPU (busy 0.25-0.33 at its limit on an H200): so a GPU is also measured
# with two daemons, and two GPUs with one and with two daemons each. Each case: N streams per daemon, all at
# once; the case passes when every daemon is at real time. Merged per case into $OUT/<case>.json.
MULTI=/tmp/acceptance_multi; mkdir -p "$MULTI"
daemons_at_once() {  # CASE N DEVICE...: true when every daemon is at real time
    local case=$1 n=$2 t i=0 pids=() device
    shift 2
    t=$(step_timeout 60 10)
    rm -f "$MULTI/$case"_*
    for device in "$@"; do
        timeout "$t" "${BENCH[@]}" --device "$device" --streams "$n" --json "$MULTI/${case}_$i.json" \
            > "$MULTI/${case}_$i.txt" 2>&1 &
        pids+=($!); i=$((i + 1))
    done
    wait "${pids[@]}"
    grep -h " streams " "$MULTI/${case}"_*.txt | sed "s/^/  $case: /"
    python3 - "$OUT/$case.json" "$n" "$@" <<'EOF'
import glob, json, sys
out, n, devices = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
stem = out.rsplit("/", 1)[1][:-len(".json")]
runs = []
for index, device in enumerate(devices):
    try:
        run = json.load(open(f"/tmp/acceptance_multi/{stem}_{index}.json"))["runs"][0]
    except (OSError, ValueError, IndexError, KeyError):
        run = {"streams": n, "error": "no result (timed out or failed)"}
    run["device"] = int(device)
    runs.append(run)
ok = all(run.get("real_time") for run in runs)
record = {"case": stem, "streams_per_daemon": n, "devices": [int(d) for d in devices], "all_real_time": ok,
          "streams_at_real_time": n * len(devices) if ok else 0, "runs": runs}
try:
    cases = json.load(open(out))
except (OSError, ValueError):
    cases = []
json.dump(cases + [record], open(out, "w"), indent=1)
sys.exit(0 if ok else 1)
EOF
}
# case DEVICES...: N per daemon = the one-daemon result, then 0.9 of it; echoes the streams served
run_case() {
    local case=$1 n
    shift
    for n in "$ONE_GPU" $(( ONE_GPU * 9 / 10 )); do
        if (( BUDGET - $(elapsed) < 45 )); then echo "  $case: no time left for $n per daemon" >&2; break; fi
        if daemons_at_once "$case" "$n" "$@" >&2; then echo $(( n * $# )); return; fi
    done
    echo 0
}
# CASES="16:0,0,0 16:0,0,0,1,1,1": instead of steps 1b, 2 and 4, these cases (N streams per daemon: the daemons'
# devices), each all at once, written to $OUT/case_<k>.json.
if [ -n "${CASES:-}" ]; then
    k=0
    for spec in $CASES; do
        k=$((k + 1)); n=${spec%%:*}; IFS=, read -r -a devices <<< "${spec#*:}"
        say "case $k: ${#devices[@]} daemon(s) at once on devices ${devices[*]}, $n streams each"
        if daemons_at_once "case_$k" "$n" "${devices[@]}"; then say "case $k: every daemon at real time"
        else say "case $k: NOT every daemon at real time"; fi
    done
fi
TWO_GPUS=0; ONE_GPU_TWO_DAEMONS=0; TWO_GPUS_FOUR_DAEMONS=0
if (( ONE_GPU > 0 )) && [ -z "${CASES:-}" ]; then
    if (( GPUS >= 2 )); then
        say "two GPUs, one daemon each (model.device 0 and 1), $ONE_GPU streams each"
        TWO_GPUS=$(run_case two_gpus 0 1)
    fi
    say "one GPU, two daemons, $ONE_GPU streams each"
    ONE_GPU_TWO_DAEMONS=$(run_case one_gpu_two_daemons 0 0)
    if (( GPUS >= 2 && ONE_GPU_TWO_DAEMONS > 0 )); then
        say "two GPUs, two daemons each"
        TWO_GPUS_FOUR_DAEMONS=$(run_case two_gpus_four_daemons 0 0 1 1)
    fi
else
    say "no one-GPU result: skipping the multi-daemon cases"
fi
say "streams at real time: one daemon $ONE_GPU; two GPUs x one daemon $TWO_GPUS; one GPU x two daemons" \
    "$ONE_GPU_TWO_DAEMONS; two GPUs x two daemons $TWO_GPUS_FOUR_DAEMONS"

# 4. what tracking (on by default, host time per frame) costs one daemon: the same bench without it, if time is left
if (( BUDGET - $(elapsed) > 40 )) && [ -z "${CASES:-}" ]; then
    NO_TRACK_N=$(( ONE_GPU > 0 ? ONE_GPU + ONE_GPU / 4 : 32 ))
    say "one daemon, $NO_TRACK_N streams, --no-tracking"
    timeout "$(step_timeout 40 0)" "${BENCH[@]}" --device 0 --streams "$NO_TRACK_N" --no-tracking \
        --json "$OUT/no_tracking.json" | grep " streams "
fi

# Summary --------------------------------------------------------------------------------------------------
say "summary"
python3 - "$OUT" "$PYTEST_RC" "$ONE_GPU" "$TWO_GPUS" "$ONE_GPU_TWO_DAEMONS" "$TWO_GPUS_FOUR_DAEMONS" "$(elapsed)" \
    "$COMMAND" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from record import provenance
out, pytest_rc = Path(sys.argv[1]), int(sys.argv[2])
one, two, one_two, two_four, seconds = (int(v) for v in sys.argv[3:8])
command = sys.argv[8]

def load_path(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load(name):
    return load_path(out / name)

def brief(run):
    if not run or run.get("error"):
        return run and {"streams": run.get("streams"), "error": run.get("error")}
    return {"streams": run["streams"], "real_time": run.get("real_time"),
            "fps_per_stream_min": round(run["published_fps"]["min"], 2),
            "frame_age_ms_p50": run["frame_age_seconds"]["p50"] and round(run["frame_age_seconds"]["p50"] * 1e3, 1),
            "frame_age_ms_p99": run["frame_age_seconds"]["p99"] and round(run["frame_age_seconds"]["p99"] * 1e3, 1),
            "batch_mean": run["batch_size"]["mean"], "daemon_cpu_cores": round(run["daemon_cpu_cores"], 2),
            "gpu_busy_fraction": run["gpu_busy_fraction"], "superseded": run["dropped"]["superseded"]}

sweep = load("sweep_gpu0.json")


def cases(name):
    return [{"streams_per_daemon": case["streams_per_daemon"], "devices": case["devices"],
             "all_real_time": case["all_real_time"], "runs": [brief(run) for run in case["runs"]]}
            for case in load(f"{name}.json") or []]


summary = {
    **provenance(command),
    "pytest_tests_gpu_rc": pytest_rc,
    "nvdec_fidelity": load("nvdec_fidelity.json"),
    "one_gpu_one_daemon_streams": one,
    "one_gpu_one_daemon_runs": [brief(run) for run in (sweep or {}).get("runs", [])],
    "two_gpus_one_daemon_each_streams": two,
    "two_gpus_one_daemon_each": cases("two_gpus"),
    "one_gpu_two_daemons_streams": one_two,
    "one_gpu_two_daemons": cases("one_gpu_two_daemons"),
    "two_gpus_two_daemons_each_streams": two_four,
    "two_gpus_two_daemons_each": cases("two_gpus_four_daemons"),
    "two_gpus_over_one": {"one_daemon_per_gpu": round(two / one, 2) if one else None,
                          "two_daemons_per_gpu": round(two_four / one_two, 2) if one_two else None,
                          "target": 1.8},
    "one_daemon_no_tracking": [brief(run) for run in (load("no_tracking.json") or {}).get("runs", [])],
    # CASES: every daemons-at-once case in full (case_<k>.json).
    "cases": [case for path in sorted(out.glob("case_*.json")) for case in load_path(path) or []],
    "seconds": seconds,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
fidelity = summary["nvdec_fidelity"] or {}
print(f"pytest tests/gpu rc {pytest_rc}; NVDEC vs OpenCV decode fidelity mAP@0.5:0.95 "
      f"{fidelity.get('fidelity_map50_95')} (mAP@0.5 {fidelity.get('fidelity_map50')}, "
      f"{fidelity.get('frames_scored')} frames)")
print(f"streams at real time: one GPU, one daemon {one}; two GPUs, one daemon each {two}; one GPU, two daemons "
      f"{one_two}; two GPUs, two daemons each {two_four}; two GPUs / one GPU {summary['two_gpus_over_one']}")
for name in ("one_gpu_one_daemon_runs",):
    for run in summary[name]:
        print(f"  sweep: {run}")
for name in ("two_gpus_one_daemon_each", "one_gpu_two_daemons", "two_gpus_two_daemons_each"):
    for case in summary[name]:
        print(f"  {name} at {case['streams_per_daemon']}/daemon: "
              + "; ".join(f"dev {d} fps min {r and r.get('fps_per_stream_min')} p99 {r and r.get('frame_age_ms_p99')} ms "
                          f"cores {r and r.get('daemon_cpu_cores')} gpu {r and r.get('gpu_busy_fraction')}"
                          for d, r in zip(case["devices"], case["runs"])))
for run in summary["one_daemon_no_tracking"]:
    print(f"  one daemon without tracking: {run}")
EOF
say "done"

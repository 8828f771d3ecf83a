#!/usr/bin/env bash
# A GPU host's long run in phases: the 20-minute GPU soak (tools/soak.py: NVDEC sources, the torch stand-in
# engine, reloads with detector swaps), with the other GPU and CPU measurements made beside it.
#   phase 1: start the soak in its own process session (setsid) on GPU 1 and cores 0-7 (GPU 0 where there is one
#            GPU); pytest tests/gpu during the soak's warm-up, which growth ignores; with two GPUs also
#            benchmarks/gpu_bench.py and one daemon with 24 NVDEC streams on GPU 0
#   phase 2: `streamd bench` (CPU, ONNX Runtime) on two pinned otherwise idle cores, and
#            benchmarks/cpu_pipeline_parts.py there
#   phase 3: wait for the soak's report and copy it to $OUT/gpu_soak.json
#   probe:   three short soaks side by side on GPU 0, each measured per process: the full churn, no detector
#            swaps, no reloads (where a device memory creep comes from)
# Phases 1 and 2 each last PHASE_SECONDS (570) and print the soak's state every minute, so each phase fits a
# command limited to ten minutes while the soak, in its own session, runs on across the phases.
# Run from the repository root on the GPU machine, one phase after the other:
#   bash benchmarks/gpu_session.sh 1; bash benchmarks/gpu_session.sh 2; bash benchmarks/gpu_session.sh 3
# Needs what benchmarks/gpu_acceptance.sh needs (its header), plus media/dog.jpg in $STREAMD_SHARED;
# STREAMD_H264_ANNEXB, optional: a raw H.264 (Annex-B) file for the RTSP tests in tests/gpu. Results go to $OUT
# (default ./out); SOAK_SECONDS (1200), PROBE_SECONDS (110), PHASE_SECONDS (570), WHEELS_DIR (.whl).
set -u
PHASE=${1:?phase 1, 2 or 3}
START=$(date +%s)
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session_phase$PHASE.log") 2>&1
say() { echo "== [$(( $(date +%s) - START )) s] $*"; }

WHEELS=${WHEELS_DIR:-.whl}
if [ ! -d /tmp/site/PyNvVideoCodec ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export STREAMD_SHARED=${STREAMD_SHARED:-$(cd .. && pwd)/shared}
export STREAMD_H264_VIDEO=${STREAMD_H264_VIDEO:-$STREAMD_SHARED/media/vtest_1080p30.mp4}
export STREAMD_H264_RESCHANGE=${STREAMD_H264_RESCHANGE:-}
export STREAMD_H264_ANNEXB=${STREAMD_H264_ANNEXB:-}
export STREAMD_GPU_REPORT_DIR=$OUT
export STREAMD_TEST_MODEL=$STREAMD_SHARED/models/yolox_nano.onnx  # tests/gpu/test_pipeline.py, test_zero_copy.py
MODEL=$STREAMD_SHARED/models/yolox_nano.onnx
SOAK_SECONDS=${SOAK_SECONDS:-1200}
# One GPU (16 host cores there): the soak shares GPU 0 with the tests (its memory is measured per
# process, so that is harmless) and the GPU benches are left out (they would time a shared GPU).
GPUS=$(nvidia-smi -L | wc -l)
if (( GPUS > 1 )); then SOAK_DEVICE=1 SOAK_CORES=0-7 OTHER_CORES=8-31 BENCH_CORES=30,31
else SOAK_DEVICE=0 SOAK_CORES=0-7 OTHER_CORES=8-13 BENCH_CORES=14,15; fi

soak_status() {
    say "soak: $(tail -c 600 /tmp/gpusoak.log 2>/dev/null | tr '\n' ' ')"
    nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | head -5
}

wait_until() {  # ELAPSED: print the soak's state every minute until this call has run ELAPSED seconds
    while (( $(date +%s) - START < $1 )); do sleep 60; soak_status; done
}

case $PHASE in
1)
    rm -f /tmp/gpusoak.json
    setsid nohup taskset -c $SOAK_CORES python3 tools/soak.py --video "$STREAMD_H264_VIDEO" --standin-engine --model "$MODEL" \
        --device $SOAK_DEVICE --max-batch 8 --duration "$SOAK_SECONDS" --warmup 240 --sample-interval 10 --no-rtsp \
        --json /tmp/gpusoak.json --keep > /tmp/gpusoak.log 2>&1 < /dev/null &
    say "GPU soak started: ${SOAK_SECONDS} s on GPU $SOAK_DEVICE, cores $SOAK_CORES (the tests below fall in its warm-up)"
    nvidia-smi -L
    say "pytest tests/gpu"
    taskset -c $OTHER_CORES timeout 300 python3 -m pytest -q -rs -p no:cacheprovider tests/gpu
    say "pytest rc $?"
    if (( GPUS > 1 )); then
        CUDA_VISIBLE_DEVICES=0 taskset -c $OTHER_CORES timeout 100 python3 benchmarks/gpu_bench.py --model "$MODEL" \
            --video "$STREAMD_SHARED/media/vtest.avi" --image "$STREAMD_SHARED/media/dog.jpg" \
            --out "$OUT/gpu_bench.json"
        say "gpu_bench rc $?"
        taskset -c $OTHER_CORES timeout 60 python3 -m streamd bench --decoder nvdec --standin-engine --model "$MODEL" \
            --video "$STREAMD_H264_VIDEO" --seconds 8 --warmup-seconds 2 --batch-window 0.004 --max-batch 32 \
            --device 0 --streams 24 --json "$OUT/streams24_gpu0.json"
        say "bench --streams 24 rc $?"
    fi
    soak_status
    wait_until "${PHASE_SECONDS:-570}"
    ;;
2)
    soak_status
    say "streamd bench (CPU, ONNX Runtime) on cores $BENCH_CORES"
    taskset -c $BENCH_CORES timeout 300 python3 -m streamd bench --model "$MODEL" --source "$STREAMD_SHARED/media/vtest.avi" \
        --frames 300 --rounds 5 --paced-seconds 20 --json "$OUT/cpu_bench_2cores.json"
    say "bench rc $?"
    taskset -c $BENCH_CORES timeout 150 python3 benchmarks/cpu_pipeline_parts.py --rounds 3 --json "$OUT/cpu_parts.json"
    say "cpu parts rc $?"
    wait_until "${PHASE_SECONDS:-570}"
    ;;
probe)
    # Where the soak's device memory creep comes from: three short soaks side by side on GPU 0, each measured
    # per process: A the full churn, B without detector swaps, C no reloads (the steady file's loop only).
    COMMON=(--video "$STREAMD_H264_VIDEO" --standin-engine --model "$MODEL" --device 0 --max-batch 8
            --duration "${PROBE_SECONDS:-110}" --warmup 20 --sample-interval 5 --no-rtsp --no-preview)
    taskset -c 0-4 python3 tools/soak.py "${COMMON[@]}" --reload-interval 2 --json "$OUT/probe_a.json" > "$OUT/probe_a.log" 2>&1 &
    taskset -c 5-9 python3 tools/soak.py "${COMMON[@]}" --reload-interval 2 --no-model-swap --json "$OUT/probe_b.json" > "$OUT/probe_b.log" 2>&1 &
    taskset -c 10-14 python3 tools/soak.py "${COMMON[@]}" --reload-interval 0 --json "$OUT/probe_c.json" > "$OUT/probe_c.log" 2>&1 &
    wait
    for v in a b c; do
        python3 - "$OUT/probe_$v.json" "$v" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
memory = [(s["elapsed_seconds"], round((s["gpu_memory_bytes"] or 0) / 2**20), s["sources"]) for s in d["samples"]]
print(sys.argv[2], d["summary"].get("gpu_memory_growth_after_warmup"), d["churn"]["reloads_applied"], d["failures"])
print("  one-source samples:", [m for m in memory if m[2] == 1][::2])
EOF2
    done
    ;;
3)
    say "waiting for the soak's report"
    for _ in $(seq 1 50); do [ -f /tmp/gpusoak.json ] && break; sleep 5; done
    cp /tmp/gpusoak.json "$OUT/gpu_soak.json" 2>/dev/null || say "no soak report yet"
    tail -c 3000 /tmp/gpusoak.log
    ;;
esac

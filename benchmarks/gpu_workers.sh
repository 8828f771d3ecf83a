#!/usr/bin/env bash
# Worker processes on one GPU: `streamd bench --streams N` through one process and through the supervisor
# with K workers, NVDEC decode, yolox_nano on the torch stand-in engine (TensorRT's place), tracking on.
# Each run reports every stream's fps and frame age, each worker's cores and GPU memory, NVDEC and GPU busy,
# and the ceiling. Run from the repository root on a GPU machine:
#   STREAMD_SHARED=path/to/data bash benchmarks/gpu_workers.sh "IN 32 32" "W 3 72 24" "W 4 72 18"
# The data folder holds models/yolox_nano.onnx, models/coco_classes.txt and media/vtest_1080p30.mp4 (made with
# `streamd bench --make-test-video`); TESTS=1 first runs tests/gpu/test_workers.py and tests/gpu/test_nvdec_hardening.py.
# EXTRA_TESTS: more test paths for that run. KILL="STREAMS WORKERS MAX_BATCH [MAX_BATCH...]" then runs benchmarks/worker_kill.py
# (5 SIGKILLs at full load) once per max batch (KILL_WARMUP seconds, default 25; KILL_INTERVAL, default 10);
# FAMILIES="NAME=MODEL:STREAMS:MAX_BATCH ..." runs `streamd bench` on other models (a MODEL ending in .skeleton.onnx is
# first restored with random weights by benchmarks/onnx_skeleton.py: throughput does not depend on them); MPS=1 then runs
# every spec again with CUDA MPS serving the GPU (names end in _mps). ANALYTICS=1 runs every spec again with
# `--analytics` (4 zones and 2 lines a stream; names end in _an), right after the plain runs.
# WHEELS_DIR (default .whl) may hold wheels the machine lacks (pyzmq, PyNvVideoCodec), installed to /tmp/site.
# NVDEC_CEILING=1 first runs benchmarks/nvdec_ceiling.py (decode alone, one process against several); MPS_ONLY=1
# runs the specs under MPS only.
# A run: "IN STREAMS MAX_BATCH" (one process, in the bench's own), "W WORKERS STREAMS MAX_BATCH", or a sweep
# "S WORKERS FIRST MAX MAX_BATCH" (largest N at real time with frame age p99 <= 100 ms); JSON to $OUT.
set -u
OUT=${OUT:-$PWD/out}
DATA=${STREAMD_SHARED:?the data folder: models/yolox_nano.onnx, models/coco_classes.txt, media/vtest_1080p30.mp4}
export STREAMD_SHARED=$DATA STREAMD_H264_VIDEO=$DATA/media/vtest_1080p30.mp4
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
mkdir -p "$OUT"
WHEELS=${WHEELS_DIR:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/zmq ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
if [ "${TESTS:-0}" = 1 ]; then
    timeout 300 python3 -m pytest -q ${EXTRA_TESTS:-} tests/gpu/test_workers.py tests/gpu/test_nvdec_hardening.py -s 2>&1 \
        | tail -25
fi
run_specs() {
suffix=$1; shift
for spec in "$@"; do
    set -- $spec
    sweep=""
    if [ "$1" = IN ]; then workers=1; streams=$2; batch=$3; name="w${workers}_s${streams}_b${batch}${suffix}"
    elif [ "$1" = S ]; then workers=$2; streams=$3; batch=$5; sweep="--sweep --max-streams $4 --max-age-p99 0.1 --sweep-step ${SWEEP_STEP:-8}"
        name="sweep_w${workers}_b${batch}${suffix}"
    else workers=$2; streams=$3; batch=$4; name="w${workers}_s${streams}_b${batch}${suffix}"; fi
    echo "== $name $(date +%s)"
    timeout 560 python3 -m streamd bench --streams "$streams" --workers "$workers" --max-batch "$batch" $sweep \
        --decoder nvdec --standin-engine --model "$DATA/models/yolox_nano.onnx" \
        --classes "$DATA/models/coco_classes.txt" --video "$STREAMD_H264_VIDEO" --seconds "$SECONDS_PER_RUN" --warmup-seconds 3 \
        --json "$OUT/$name.json" ${BENCH_FLAGS:-} 2>"$OUT/$name.err" | tail -8
    echo "   exit $? $(date +%s)"; tail -3 "$OUT/$name.err"
done
}
if [ "${NVDEC_CEILING:-0}" = 1 ]; then
    echo "== nvdec ceiling $(date +%s)"
    timeout 200 python3 benchmarks/nvdec_ceiling.py --video "$STREAMD_H264_VIDEO" --seconds 6 \
        --layouts "${NVDEC_LAYOUTS:-1x48,2x24,4x12,6x8}" --out "$OUT/nvdec_ceiling.json" 2>"$OUT/nvdec.err" | tail -40
    echo "   exit $? $(date +%s)"; tail -3 "$OUT/nvdec.err"
fi
specs=("$@")
if [ "${MPS_ONLY:-0}" != 1 ]; then run_specs "" "${specs[@]}"; fi
if [ "${ANALYTICS:-0}" = 1 ]; then
    BENCH_FLAGS=--analytics run_specs _an "${specs[@]}"
fi
if [ -n "${KILL:-}" ]; then
    set -- $KILL
    kill_streams=$1; kill_workers=$2; shift 2
    for batch in "$@"; do
        name="kill_s${kill_streams}_w${kill_workers}_b${batch}"
        echo "== $name $(date +%s)"
        timeout 240 python3 benchmarks/worker_kill.py --model "$DATA/models/yolox_nano.onnx" --video "$STREAMD_H264_VIDEO" \
            --streams "$kill_streams" --workers "$kill_workers" --max-batch "$batch" --decoder nvdec --standin-engine \
            --kills 5 --interval "${KILL_INTERVAL:-10}" --warmup-seconds "${KILL_WARMUP:-25}" --json "$OUT/$name.json" \
            2>"$OUT/$name.err" | grep -v '^gap ' | tail -12
        echo "   exit $? $(date +%s)"; tail -3 "$OUT/$name.err"
    done
fi
for family in ${FAMILIES:-}; do
    name=${family%%=*}; spec=${family#*=}
    IFS=: read -r model streams batch <<<"$spec"
    if [ "${model%.skeleton.onnx}" != "$model" ]; then
        python3 benchmarks/onnx_skeleton.py restore "$model" "/tmp/$name.onnx" || continue
        model=/tmp/$name.onnx
    fi
    echo "== family $name $(date +%s)"
    timeout 200 python3 -m streamd bench --standin-engine --model "$model" --streams "$streams" --max-batch "$batch" \
        --decoder nvdec --video "$STREAMD_H264_VIDEO" --seconds "$SECONDS_PER_RUN" --warmup-seconds 3 \
        --json "$OUT/family_$name.json" 2>"$OUT/family_$name.err" | tail -8
    echo "   exit $? $(date +%s)"; tail -3 "$OUT/family_$name.err"
done
if [ "${MPS:-0}" = 1 ] || [ "${MPS_ONLY:-0}" = 1 ]; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d; then
        run_specs _mps "${specs[@]}"
        echo quit | nvidia-cuda-mps-control
    else
        echo "MPS: nvidia-cuda-mps-control could not start"
    fi
fi

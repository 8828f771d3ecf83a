"""CUDA C sources of the GPU pre/post-processing kernels (compiled by ``streamd.cuda.nvrtc``).

Kept apart from the Python that launches them so each file stays short. No headers are included:
NVRTC needs none, and fp16 stores use one PTX ``cvt`` instead of ``cuda_fp16.h``.
"""

# Shared by both letterbox kernels.
_RESIZE_TAPS_SOURCE = r"""
#define RESIZE_COEF_SCALE 2048.0f
// INTER_LINEAR taps of output pixel (rx, ry) inside the resized area: source columns sx, sx1 with
// weights a0, a1, source row sy with weights b0, b1 (11-bit fixed point), as OpenCV computes them.
__device__ __forceinline__ void resize_taps(int rx, int ry, double scale_x, double scale_y, int src_w,
                                            int& sx, int& sx1, int& a0, int& a1, int& sy, int& b0, int& b1) {
    float fx = (float)((rx + 0.5) * scale_x - 0.5);
    sx = (int)floorf(fx);
    fx -= sx;
    if (sx < 0) { fx = 0.f; sx = 0; }
    if (sx >= src_w - 1) { fx = 0.f; sx = src_w - 1; }
    sx1 = min(sx + 1, src_w - 1);
    a0 = __float2int_rn((1.f - fx) * RESIZE_COEF_SCALE);
    a1 = __float2int_rn(fx * RESIZE_COEF_SCALE);
    float fy = (float)((ry + 0.5) * scale_y - 0.5);
    sy = (int)floorf(fy);
    fy -= sy;
    b0 = __float2int_rn((1.f - fy) * RESIZE_COEF_SCALE);
    b1 = __float2int_rn(fy * RESIZE_COEF_SCALE);
}
"""

# Letterbox: uint8 BGR HWC frame of any size -> NCHW network input (float32 or fp16).
#
# The resize reproduces OpenCV's INTER_LINEAR for 8-bit images bit for bit (checked against
# cv2.resize 5.0 on random images): source coordinate ((d + 0.5) * scale - 0.5) computed in double
# then rounded to float; 11-bit fixed-point weights rounded half-to-even; x clamped by zeroing the
# weight at the borders, y by clamping the row; OpenCV's SIMD vertical pass
# ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2. The uint8 result then goes through
# the convention's per-channel affine (gain, offset), exactly as the CPU Preprocessor does.
#
# Thread 0 also zeroes the slot's candidate counter for the decode kernel that follows on the same
# stream: it saves one cudaMemsetAsync call (~10 us of host time) per frame.
LETTERBOX_SOURCE = _RESIZE_TAPS_SOURCE + r"""

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(unsigned short* p, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}

template <typename OUT>
__device__ void letterbox(const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
                          OUT* __restrict__ dst, int dst_w, int dst_h,
                          int resized_w, int resized_h, int pad_x, int pad_y,
                          double scale_x, double scale_y,
                          float g0, float g1, float g2, float o0, float o1, float o2,
                          int pad_value, int swap_rb, int* __restrict__ counter) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (counter != 0 && x == 0 && y == 0) *counter = 0;
    if (x >= dst_w || y >= dst_h) return;
    const int rx = x - pad_x, ry = y - pad_y;
    int b = pad_value, g = pad_value, r = pad_value;
    if (rx >= 0 && ry >= 0 && rx < resized_w && ry < resized_h) {
        int sx, sx1, a0, a1, sy, b0, b1;
        resize_taps(rx, ry, scale_x, scale_y, src_w, sx, sx1, a0, a1, sy, b0, b1);
        const unsigned char* row0 = src + (size_t)min(max(sy, 0), src_h - 1) * src_pitch;
        const unsigned char* row1 = src + (size_t)min(max(sy + 1, 0), src_h - 1) * src_pitch;
        int v[3];
        #pragma unroll
        for (int c = 0; c < 3; ++c) {
            const int s0 = row0[sx * 3 + c] * a0 + row0[sx1 * 3 + c] * a1;
            const int s1 = row1[sx * 3 + c] * a0 + row1[sx1 * 3 + c] * a1;
            const int t = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
            v[c] = min(max(t, 0), 255);
        }
        b = v[0]; g = v[1]; r = v[2];
    }
    const size_t plane = (size_t)dst_w * dst_h;
    const size_t at = (size_t)y * dst_w + x;
    const int c0 = swap_rb ? r : b, c2 = swap_rb ? b : r;
    store(dst + at, (float)c0 * g0 + o0);
    store(dst + plane + at, (float)g * g1 + o1);
    store(dst + 2 * plane + at, (float)c2 * g2 + o2);
}

#define LETTERBOX_ARGS const unsigned char* src, int src_w, int src_h, int src_pitch, \
    void* dst, int dst_w, int dst_h, int resized_w, int resized_h, int pad_x, int pad_y, \
    double scale_x, double scale_y, float g0, float g1, float g2, float o0, float o1, float o2, \
    int pad_value, int swap_rb, int* counter
extern "C" __global__ void letterbox_f32(LETTERBOX_ARGS) {
    letterbox<float>(src, src_w, src_h, src_pitch, (float*)dst, dst_w, dst_h, resized_w, resized_h, pad_x, pad_y,
                     scale_x, scale_y, g0, g1, g2, o0, o1, o2, pad_value, swap_rb, counter);
}
extern "C" __global__ void letterbox_f16(LETTERBOX_ARGS) {
    letterbox<unsigned short>(src, src_w, src_h, src_pitch, (unsigned short*)dst, dst_w, dst_h, resized_w,
                              resized_h, pad_x, pad_y, scale_x, scale_y, g0, g1, g2, o0, o1, o2, pad_value,
                              swap_rb, counter);
}
"""

# One cell of an output, shared by both decode kernels: false when it does not pass the score threshold,
# else its 8-float record (x1, y1, x2, y2, score, class, cell, 0). YOLOX [B, N, 5+C] (``yolox``: raw box
# terms; ``yolox-decoded``: pixel boxes), Ultralytics' anchor-free head either way round, NMS-free rows.
# The arithmetic is the CPU decoder's, in the same float32 order, so scores are bit-identical; exp is taken
# in double and rounded, the most accurate float32 result.
_CANDIDATE_SOURCE = r"""
// The class searches below are numpy's max/argmax: first best wins ties, and a NaN wins and ends the search,
// so a candidate with a NaN class score scores NaN and is dropped, as by the CPU decoders.
// The 8-float record of a centre/size box: corners as the CPU decoders compute them (half size, then +-).
__device__ __forceinline__ void centre_record(float cx, float cy, float w, float h, float score, int best_class,
                                              int i, float* __restrict__ record) {
    const float hw = __fmul_rn(w, 0.5f), hh = __fmul_rn(h, 0.5f);
    record[0] = __fsub_rn(cx, hw);
    record[1] = __fsub_rn(cy, hh);
    record[2] = __fadd_rn(cx, hw);
    record[3] = __fadd_rn(cy, hh);
    record[4] = score;
    record[5] = (float)best_class;
    record[6] = (float)i;
    record[7] = 0.f;
}

__device__ __forceinline__ bool yolox_candidate(const float* __restrict__ row, int channels,
                                                const float* __restrict__ grid, int i, int boxes_decoded,
                                                float threshold, float* __restrict__ record) {
    const float objectness = row[4];
    if (!(objectness > threshold)) return false;
    float best = row[5];
    int best_class = 0;
    for (int c = 1; c < channels - 5 && best == best; ++c) {
        const float p = row[5 + c];
        if (!(p <= best)) { best = p; best_class = c; }
    }
    const float score = __fmul_rn(objectness, best);
    if (!(score > threshold)) return false;
    float cx, cy, w, h;
    if (boxes_decoded) {
        cx = row[0]; cy = row[1]; w = row[2]; h = row[3];
    } else {
        const float gx = grid[3 * i], gy = grid[3 * i + 1], stride = grid[3 * i + 2];
        cx = __fmul_rn(__fadd_rn(row[0], gx), stride);
        cy = __fmul_rn(__fadd_rn(row[1], gy), stride);
        w = __fmul_rn((float)exp((double)row[2]), stride);
        h = __fmul_rn((float)exp((double)row[3]), stride);
    }
    centre_record(cx, cy, w, h, score, best_class, i, record);
    return true;
}

// Ultralytics anchor-free head (YOLOv5u / v8 / 11): 4 box terms (centre, size in network-input pixels)
// then C sigmoid-ed class scores, no objectness. ``step`` is the distance between one cell's channels:
// ``cells`` for [B, 4+C, N] (channel-major), 1 for [B, N, 4+C]. The CPU decoder's float32 arithmetic.
__device__ __forceinline__ bool ultralytics_candidate(const float* __restrict__ cell, int step, int classes,
                                                      float threshold, int i, float* __restrict__ record) {
    float best = cell[4 * step];
    int best_class = 0;
    for (int c = 1; c < classes && best == best; ++c) {
        const float p = cell[(4 + c) * step];
        if (!(p <= best)) { best = p; best_class = c; }
    }
    if (!(best > threshold)) return false;
    centre_record(cell[0], cell[step], cell[2 * step], cell[3 * step], best, best_class, i, record);
    return true;
}

// NMS-free export row: x1, y1, x2, y2 (network-input pixels), score, class id; a class id outside the
// configured names is dropped, as the CPU decoder does.
__device__ __forceinline__ bool end2end_candidate(const float* __restrict__ row, int classes, float threshold,
                                                  int i, float* __restrict__ record) {
    if (!(row[4] > threshold)) return false;
    // Compared as a float first: a NaN class id is dropped (on a GPU its int conversion gives 0).
    if (!(row[5] >= 0.f && row[5] < (float)classes)) return false;
    const int class_id = (int)row[5];
    for (int j = 0; j < 5; ++j) record[j] = row[j];
    record[5] = (float)class_id;
    record[6] = (float)i;
    record[7] = 0.f;
    return true;
}

// RT-DETR row (``queries``: cx, cy, w, h, C class scores; else cx, cy, w, h, score, class id), box normalised
// to the input: corners as the CPU decoder computes them (half size, +-, then times the input size).
__device__ __forceinline__ bool rtdetr_candidate(const float* __restrict__ row, int queries, int classes,
                                                 const float* __restrict__ size, float threshold, int i,
                                                 float* __restrict__ record) {
    float score;
    int class_id;
    if (queries) {
        score = row[4];
        class_id = 0;
        for (int c = 1; c < classes && score == score; ++c) {
            if (!(row[4 + c] <= score)) { score = row[4 + c]; class_id = c; }
        }
    } else {
        score = row[4];
        if (!(row[5] >= 0.f && row[5] < (float)classes)) return false;  // NaN included, as the CPU decoder
        class_id = (int)row[5];
    }
    if (!(score > threshold)) return false;
    if (class_id < 0 || class_id >= classes) return false;
    const float hw = __fmul_rn(row[2], 0.5f), hh = __fmul_rn(row[3], 0.5f);
    record[0] = __fmul_rn(__fsub_rn(row[0], hw), size[0]);
    record[1] = __fmul_rn(__fsub_rn(row[1], hh), size[1]);
    record[2] = __fmul_rn(__fadd_rn(row[0], hw), size[2]);
    record[3] = __fmul_rn(__fadd_rn(row[1], hh), size[3]);
    record[4] = score;
    record[5] = (float)class_id;
    record[6] = (float)i;
    record[7] = 0.f;
    return true;
}

// Cell ``i`` of frame output ``frame`` ([cells, channels] floats, or [channels, cells] for mode 2) in the
// layout ``mode``: 0 yolox, 1 yolox-decoded, 2 ultralytics, 3 ultralytics-transposed, 4 end2end, 5 rtdetr,
// 6 rtdetr-queries. ``grid``: YOLOX's cell table, or RT-DETR's input size.
__device__ __forceinline__ bool layout_candidate(const float* __restrict__ frame, int cells, int channels,
                                                 const float* __restrict__ grid, int mode, int classes,
                                                 float threshold, int i, float* __restrict__ record) {
    switch (mode) {
        case 2: return ultralytics_candidate(frame + i, cells, classes, threshold, i, record);
        case 3: return ultralytics_candidate(frame + (size_t)i * channels, 1, classes, threshold, i, record);
        case 4: return end2end_candidate(frame + (size_t)i * channels, classes, threshold, i, record);
        case 5: case 6:
            return rtdetr_candidate(frame + (size_t)i * channels, mode == 6, classes, grid, threshold, i, record);
        default: return yolox_candidate(frame + (size_t)i * channels, channels, grid, i, mode, threshold, record);
    }
}
"""

# Decode + score filter + compaction, one thread per cell (every GPU layout; named for YOLOX, the first):
# a surviving cell appends its record at an atomic counter; the host sorts records by cell to restore the
# CPU decoder's order before NMS.
DECODE_SOURCE = _CANDIDATE_SOURCE + r"""
extern "C" __global__ void yolox_decode_f32(const float* __restrict__ rows, int cells, int channels,
                                            const float* __restrict__ grid, int mode,
                                            float threshold, int* __restrict__ counter,
                                            float* __restrict__ records, int capacity, int classes) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= cells) return;
    float record[8];
    if (!layout_candidate(rows, cells, channels, grid, mode, classes, threshold, i, record)) return;
    const int k = atomicAdd(counter, 1);
    if (k >= capacity) return;
    float* out = records + (size_t)k * 8;
    for (int j = 0; j < 8; ++j) out[j] = record[j];
}
"""

# Batched letterbox: one launch for N frames of any sizes (gridDim.z = frame), each frame either a
# packed uint8 BGR image or an NV12 surface (luma plane + interleaved UV plane, each with its pitch).
# NV12 pixels are converted to BGR with OpenCV's integer BT.601 (limited range) formula of
# cv2.cvtColor(COLOR_YUV2BGR_NV12) (20-bit fixed point, chroma shared by each 2x2 block), so the
# conversion is bit-exact; the four taps of the bilinear resize are converted first, then resized
# with the same fixed-point arithmetic as ``LETTERBOX_SOURCE``: the result equals cvtColor followed
# by the CPU letterbox. Thread (0, 0) of each frame zeroes that frame's candidate counter.
#
# Per frame the host writes one 80-byte FrameDesc (``streamd.gpu.batch_preprocess.FRAME_DESC``).
BATCH_LETTERBOX_SOURCE = _RESIZE_TAPS_SOURCE + r"""

struct FrameDesc {
    unsigned long long src;      // BGR: packed HxWx3 rows; NV12: the luma plane
    unsigned long long chroma;   // NV12: the interleaved UV plane (U first); BGR: unused
    unsigned long long counter;  // int32 zeroed for the decode kernel, or 0
    double scale_x, scale_y;
    int src_w, src_h, pitch, chroma_pitch;
    int resized_w, resized_h, pad_x, pad_y;
    int format;                  // 0: BGR, 1: NV12
    int reserved;
};

__device__ __forceinline__ unsigned char clamp_u8(int v) { return (unsigned char)min(max(v, 0), 255); }

__device__ __forceinline__ void fetch_bgr(const FrameDesc& d, int x, int y, int* bgr) {
    if (d.format == 0) {
        const unsigned char* p = (const unsigned char*)d.src + (size_t)y * d.pitch + x * 3;
        bgr[0] = p[0]; bgr[1] = p[1]; bgr[2] = p[2];
        return;
    }
    const int luma = ((const unsigned char*)d.src)[(size_t)y * d.pitch + x];
    const unsigned char* uv = (const unsigned char*)d.chroma + (size_t)(y >> 1) * d.chroma_pitch + (x & ~1);
    const int u = (int)uv[0] - 128, v = (int)uv[1] - 128;
    const int yy = max(0, luma - 16) * 1220542;
    const int half = 1 << 19;
    bgr[0] = clamp_u8((yy + half + 2116026 * u) >> 20);
    bgr[1] = clamp_u8((yy + half - 852492 * v - 409993 * u) >> 20);
    bgr[2] = clamp_u8((yy + half + 1673527 * v) >> 20);
}

extern "C" __global__ void batch_letterbox_f32(const FrameDesc* __restrict__ frames, float* __restrict__ dst,
                                               int dst_w, int dst_h, float g0, float g1, float g2,
                                               float o0, float o1, float o2, int pad_value, int swap_rb) {
    const FrameDesc& d = frames[blockIdx.z];
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (d.counter != 0 && x == 0 && y == 0) *(int*)d.counter = 0;
    if (x >= dst_w || y >= dst_h) return;
    const int rx = x - d.pad_x, ry = y - d.pad_y;
    int b = pad_value, g = pad_value, r = pad_value;
    if (rx >= 0 && ry >= 0 && rx < d.resized_w && ry < d.resized_h) {
        const int src_w = d.src_w, src_h = d.src_h;
        int sx, sx1, a0, a1, sy, b0, b1;
        resize_taps(rx, ry, d.scale_x, d.scale_y, src_w, sx, sx1, a0, a1, sy, b0, b1);
        const int y0 = min(max(sy, 0), src_h - 1), y1 = min(max(sy + 1, 0), src_h - 1);
        int p00[3], p01[3], p10[3], p11[3];
        fetch_bgr(d, sx, y0, p00); fetch_bgr(d, sx1, y0, p01);
        fetch_bgr(d, sx, y1, p10); fetch_bgr(d, sx1, y1, p11);
        int v[3];
        #pragma unroll
        for (int c = 0; c < 3; ++c) {
            const int s0 = p00[c] * a0 + p01[c] * a1;
            const int s1 = p10[c] * a0 + p11[c] * a1;
            const int t = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
            v[c] = min(max(t, 0), 255);
        }
        b = v[0]; g = v[1]; r = v[2];
    }
    const size_t plane = (size_t)dst_w * dst_h;
    float* out = dst + (size_t)blockIdx.z * 3 * plane + (size_t)y * dst_w + x;
    const int c0 = swap_rb ? r : b, c2 = swap_rb ? b : r;
    out[0] = (float)c0 * g0 + o0;
    out[plane] = (float)g * g1 + o1;
    out[2 * plane] = (float)c2 * g2 + o2;
}
"""

# Batched decode: the single-frame kernel's arithmetic (bit-identical records), blockIdx.y =
# frame. Per frame: an int32 counter in ``headers`` (32-byte stride), the first ``capacity`` records
# in ``primary`` (frame-major, so headers + primary of the whole batch are one contiguous copy
# back), later ones in ``overflow`` at their own index (``cells`` records per frame, fetched rarely).
BATCH_DECODE_SOURCE = _CANDIDATE_SOURCE + r"""
extern "C" __global__ void yolox_decode_batch_f32(const float* __restrict__ outputs, int cells, int channels,
                                                  const float* __restrict__ grid, int mode,
                                                  float threshold, int* __restrict__ headers,
                                                  float* __restrict__ primary, int capacity,
                                                  float* __restrict__ overflow, int classes) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int f = blockIdx.y;
    if (i >= cells) return;
    float record[8];
    if (!layout_candidate(outputs + (size_t)f * cells * channels, cells, channels, grid, mode, classes, threshold,
                          i, record)) return;
    const int k = atomicAdd(headers + (size_t)f * 8, 1);
    float* out = k < capacity ? primary + ((size_t)f * capacity + k) * 8 : overflow + ((size_t)f * cells + k) * 8;
    for (int j = 0; j < 8; ++j) out[j] = record[j];
}
"""

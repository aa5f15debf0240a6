// Attention over packed variable-length sequences: the CUDA twin of csrc/ops/attention.c.
//
// Forward: one block of 4 warps per (tile of 32 query rows, head, sequence). Warp w owns 8 query
// rows and lane l the key j0 + l of each tile of 32 keys, so a tile's scores are registers of the
// warp and the online softmax's row max and sum are warp reductions; Q, K, V tiles are f32 in
// shared memory. Backward (flash-attention 2): per (tile of 32 keys, query head, sequence) a block
// loops over the query tiles that see its keys (with each query row's D = rowsum(dout * out)),
// holding its head's dk and dv in registers and adding dq with atomics into an f32 scratch. With
// grouped-query heads each of the NH/NKV query heads of a key/value head writes its own f32 dk, dv
// partial (scratch), and the last kernel, which writes or adds dq, sums the partials in head order
// into dk and dv: deterministic, and NH blocks per key tile instead of NKV with a serial loop over
// the group. Without groups (NH == NKV) the block writes or adds dk and dv itself. Q, K, V and dout
// tiles are read 16 bytes at a time where aligned (every supported head size is a whole number of
// 16-byte packs).
#include "attention.cuh"
#include "elementwise.cuh"

#include <limits.h>
#include <math.h>
#include <type_traits>

namespace {

constexpr int ATT_WARPS = 4, ATT_THREADS = 32 * ATT_WARPS;
constexpr int ATT_ROWS = 8;                  // query rows (forward, backward dq) or keys (dk, dv) per warp
constexpr int ATT_BR = ATT_WARPS * ATT_ROWS; // query rows per tile
constexpr int ATT_BC = 32;                   // keys per tile: one per lane
static_assert(ATT_BC == ATT_WARPS * ATT_ROWS, "backward: each warp owns ATT_ROWS keys of a key tile");

// What the kernels need of attention_shape, plus the launch's tiling.
struct att_args {
    int NH, NKV, causal, window;
    float dropout, scale;
    lf_cuda_key key;   // the dropout stream; head h draws from lf_stream_key(key, h)
    int tiles;         // blocks per sequence (grid.x = B * tiles); a block strides over its sequence's tiles
    int accumulate;    // backward: 1 adds into dq, dk, dv; 0 writes them (their values are not read)
    int64_t ldq, ldkv; // row strides of q and dq, of k, v, dk and dv (>= NH*HD, NKV*HD)
};

// 1 when query i sees key j, both of one sequence: key_range of attention.c
__device__ __forceinline__ bool att_sees(const att_args &a, int i, int j) {
    return (!a.causal || j <= i) && (a.window <= 0 || j > i - a.window);
}

// the dropout stream of head h: head_key of attention.c (0 without dropout: the key is not read)
__device__ __forceinline__ uint64_t att_head_key(const att_args &a, int h) {
    return a.dropout > 0.0f ? lf_stream_key(lf_cuda_key_value(a.key, a.dropout), (uint64_t)h) : 0;
}

// the dropout scale of probability (i, j) of the head whose stream is hkey, 1 without dropout:
// prob_keep of attention.c (i, j packed token indices: the mask does not depend on T)
__device__ __forceinline__ float att_keep(const att_args &a, uint64_t hkey, int i, int j) {
    if (a.dropout <= 0.0f) return 1.0f;
    return lf_dropout_scale(hkey, (uint64_t)i << 32 | (uint32_t)j, a.dropout);
}

// dst: (rows, stride) f32 = src rows [row0, row0 + valid), HD columns from col (src rows ld apart);
// rows from valid on are zero; dst and stride 16-byte aligned. 16 bytes of src at once where its rows
// and col are 16-byte aligned. Called by the whole block.
template <typename T, int HD>
__device__ void att_load_rows(float *dst, int stride, const T *src, int64_t ld, int64_t col, int row0,
                              int valid, int rows) {
    using P = elementwise_pack<T>;
    constexpr int N = P::N, PR = HD / N; // elements per pack, packs per row
    static_assert(HD % N == 0 && N % 4 == 0, "a row is whole packs, a pack whole float4s");
    if ((uintptr_t)src % 16 == 0 && ld % N == 0 && col % N == 0) {
        for (int x = threadIdx.x; x < rows * PR; x += blockDim.x) {
            int r = x / PR, d = x % PR * N;
            float4 *o = (float4 *)(dst + r * stride + d);
            if (r >= valid) {
#pragma unroll
                for (int e = 0; e < N; e += 4)
                    o[e / 4] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                continue;
            }
            P p = *(const P *)(src + (int64_t)(row0 + r) * ld + col + d);
#pragma unroll
            for (int e = 0; e < N; e += 4)
                o[e / 4] =
                    make_float4(to_f32(p.v[e]), to_f32(p.v[e + 1]), to_f32(p.v[e + 2]), to_f32(p.v[e + 3]));
        }
        return;
    }
    for (int x = threadIdx.x; x < rows * HD; x += blockDim.x) {
        int r = x / HD, d = x % HD;
        dst[r * stride + d] = r < valid ? to_f32(src[(int64_t)(row0 + r) * ld + col + d]) : 0.0f;
    }
}

// s[r] = rows[r] . mine over HD, r < ATT_ROWS: rows (ATT_ROWS, HD + 4) read by the whole warp at
// once (broadcast), mine one row per lane; both 16-byte aligned
template <int HD>
__device__ __forceinline__ void att_dots(float (&s)[ATT_ROWS], const float *rows, const float *mine) {
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++)
        s[r] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HD; d += 4) {
        float4 m = *(const float4 *)(mine + d);
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            float4 x = *(const float4 *)(rows + r * (HD + 4) + d);
            s[r] = fmaf(x.x, m.x, fmaf(x.y, m.y, fmaf(x.z, m.z, fmaf(x.w, m.w, s[r]))));
        }
    }
}

// the ATT_ROWS floats at p (16-byte aligned) into registers
__device__ __forceinline__ void att_load8(float (&x)[ATT_ROWS], const float *p) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}

__device__ __forceinline__ void att_store8(float *p, const float (&x)[ATT_ROWS]) {
    *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]);
    *(float4 *)(p + 4) = make_float4(x[4], x[5], x[6], x[7]);
}

// ---- forward ----

// floats of dynamic shared memory of the forward kernel: Q (BR, HD+4), K (BC, HD+4), V (BC, HD),
// and per warp the probabilities of its rows (BC, ATT_ROWS)
constexpr int att_forward_smem_floats(int HD) {
    return ATT_BR * (HD + 4) + ATT_BC * (HD + 4) + ATT_BC * HD + ATT_WARPS * ATT_BC * ATT_ROWS;
}

// out: (T, NH*HD), lse: (T, NH); q: (T, NH*HD) rows a.ldq apart, k, v: (T, NKV*HD) rows a.ldkv apart; grid
// (B * tiles, NH)
template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v, const int32_t *offsets,
                             att_args a) {
    constexpr int S = HD + 4, DPL = (HD + 31) / 32; // padded row stride; head dims per lane
    extern __shared__ float4 att_smem[];
    float *qs = (float *)att_smem, *ks = qs + ATT_BR * S, *vs = ks + ATT_BC * S;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *pw = vs + ATT_BC * HD + warp * ATT_BC * ATT_ROWS; // this warp's probabilities, (keys, rows)
    int b = blockIdx.x / a.tiles, h = blockIdx.y, kvh = h / (a.NH / a.NKV);
    const uint64_t hkey = att_head_key(a, h);
    int start = offsets[b], end = offsets[b + 1];
    int64_t C = (int64_t)a.NH * HD;
    for (int i0 = start + (int)(blockIdx.x % a.tiles) * ATT_BR; i0 < end; i0 += a.tiles * ATT_BR) {
        int i1 = min(i0 + ATT_BR, end), klo = start, khi = a.causal ? i1 : end;
        if (a.window > 0) klo = max(start, i0 - a.window + 1);
        att_load_rows<T, HD>(qs, S, q, a.ldq, (int64_t)h * HD, i0, i1 - i0, ATT_BR);
        float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][DPL];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
            for (int t = 0; t < DPL; t++)
                acc[r][t] = 0.0f;
        }
        // every query sees itself, so klo <= i0 < khi: at least one key tile, whose first
        // __syncthreads also publishes Q
        for (int j0 = klo; j0 < khi; j0 += ATT_BC) {
            int nk = min(ATT_BC, khi - j0), j = j0 + lane;
            __syncthreads(); // the previous key tile is read
            att_load_rows<T, HD>(ks, S, k, a.ldkv, (int64_t)kvh * HD, j0, nk, ATT_BC);
            att_load_rows<T, HD>(vs, HD, v, a.ldkv, (int64_t)kvh * HD, j0, nk, ATT_BC);
            __syncthreads();
            float s[ATT_ROWS];
            att_dots<HD>(s, qs + warp * ATT_ROWS * S, ks + lane * S);
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int i = i0 + warp * ATT_ROWS + r;
                bool valid = i < i1 && lane < nk && att_sees(a, i, j);
                float x = valid ? s[r] * a.scale : -INFINITY;
                float mx = fmaxf(m[r], warp_max(x));
                float ref = mx == -INFINITY ? 0.0f : mx; // a row with no key yet stays at l = 0
                float p = expf(x - ref), alpha = expf(m[r] - ref);
                l[r] = l[r] * alpha + warp_sum(p);
                m[r] = mx;
#pragma unroll
                for (int t = 0; t < DPL; t++)
                    acc[r][t] *= alpha;
                s[r] = valid ? p * att_keep(a, hkey, i, j) : 0.0f; // the dropped probability
            }
            att_store8(pw + lane * ATT_ROWS, s);
            __syncwarp();
            for (int c = 0; c < nk; c++) {
                float p[ATT_ROWS];
                att_load8(p, pw + c * ATT_ROWS);
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    float vd = HD % 32 == 0 || d < HD ? vs[c * HD + d] : 0.0f;
#pragma unroll
                    for (int r = 0; r < ATT_ROWS; r++)
                        acc[r][t] = fmaf(p[r], vd, acc[r][t]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int i = i0 + warp * ATT_ROWS + r;
            if (i >= i1) continue;
            float inv = 1.0f / l[r];
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (HD % 32 == 0 || d < HD)
                    out[(int64_t)i * C + (int64_t)h * HD + d] = from_f32<T>(acc[r][t] * inv);
            }
            if (lane == 0) lse[(int64_t)i * a.NH + h] = m[r] + logf(l[r]);
        }
        __syncthreads(); // Q and the probabilities are read before the next query tile
    }
}

// ---- backward ----

// floats of dynamic shared memory of the backward kernel: K, V (BC, HD+4), Q, dout (BR, HD+4),
// dropped probabilities and score gradients (BR, BC), score gradients transposed (BC, BR+4),
// and the tile rows' lse and D (BR) each
constexpr int att_backward_smem_floats(int HD) {
    return 2 * ATT_BC * (HD + 4) + 2 * ATT_BR * (HD + 4) + 2 * ATT_BR * ATT_BC + ATT_BC * (ATT_BR + 4) +
           2 * ATT_BR;
}

// D of the warp's query rows i0 + warp * ATT_ROWS + r of head h: dout . out over HD, into ds (rows
// from nq on: 0); 16 bytes of each at once where both are 16-byte aligned. Called by the whole warp.
template <typename T, int HD>
__device__ void att_row_dots(float *ds, const T *dout, const T *out, int64_t C, int h, int i0, int nq) {
    using P = elementwise_pack<T>;
    const bool packed = (uintptr_t)dout % 16 == 0 && (uintptr_t)out % 16 == 0 && C % P::N == 0;
    int lane = threadIdx.x % 32;
    for (int r = 0; r < ATT_ROWS; r++) {
        int row = (threadIdx.x / 32) * ATT_ROWS + r;
        float x = 0.0f;
        if (row < nq) {
            const int64_t at = (int64_t)(i0 + row) * C + (int64_t)h * HD;
            for (int d = lane * P::N; packed && d < HD; d += 32 * P::N) {
                P g = *(const P *)(dout + at + d), o = *(const P *)(out + at + d);
#pragma unroll
                for (int e = 0; e < P::N; e++)
                    x = fmaf(to_f32(g.v[e]), to_f32(o.v[e]), x);
            }
            for (int d = lane; !packed && d < HD; d += 32)
                x += to_f32(dout[at + d]) * to_f32(out[at + d]);
        }
        x = warp_sum(x);
        if (lane == 0) ds[row] = x;
    }
}

// dq: (T, C) rows ldq apart = dq_acc: (T, C) f32 (n = T * C elements), or += with accumulate, dq_acc then
// zeroed for the next backward; with
// partials (dk_part not NULL) also dk, dv: (T, KC) rows ldkv apart (nkv = T * KC elements) = the sum over
// p < group of dk_part, dv_part: (group, T, KC) f32, added in the order p = 0, 1, ... (+= with
// accumulate). n >= nkv.
template <typename T>
__global__ void attention_finish_kernel(T *dq, T *dk, T *dv, float *dq_acc, const float *dk_part,
                                        const float *dv_part, int64_t n, int64_t C, int64_t ldq, int64_t nkv,
                                        int64_t KC, int64_t ldkv, int group, int accumulate) {
    int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= n) return;
    const int64_t xq = x / C * ldq + x % C, xkv = x / KC * ldkv + x % KC;
    dq[xq] = from_f32<T>(accumulate ? to_f32(dq[xq]) + dq_acc[x] : dq_acc[x]);
    dq_acc[x] = 0.0f;
    if (!dk_part || x >= nkv) return;
    float sk = accumulate ? to_f32(dk[xkv]) : 0.0f, sv = accumulate ? to_f32(dv[xkv]) : 0.0f;
    for (int p = 0; p < group; p++)
        sk += dk_part[p * nkv + x], sv += dv_part[p * nkv + x];
    dk[xkv] = from_f32<T>(sk), dv[xkv] = from_f32<T>(sv);
}

// dk, dv: (T, NKV*HD) rows a.ldkv apart = (+= with a.accumulate), or without them (dk_part not NULL) the
// partials of head h, dk_part, dv_part: (NH/NKV, T, NKV*HD) f32 at [h % (NH/NKV)] = (part: T*NKV*HD);
// dq_acc: (T, NH*HD) f32 += (atomics); dout, out: (T, NH*HD), q: (T, NH*HD) rows a.ldq apart, k, v: (T,
// NKV*HD) rows a.ldkv apart, lse: (T, NH); grid (B * tiles, NH)
template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_kernel(T *dk, T *dv, float *dk_part, float *dv_part, int64_t part, float *dq_acc,
                              const T *dout, const T *out, const float *lse, const T *q, const T *k,
                              const T *v, const int32_t *offsets, att_args a) {
    constexpr int S = HD + 4, DPL = (HD + 31) / 32, ST = ATT_BR + 4; // ST: stride of the transposed dS
    extern __shared__ float4 att_smem[];
    float *ks = (float *)att_smem, *vs = ks + ATT_BC * S, *qs = vs + ATT_BC * S, *gs = qs + ATT_BR * S;
    float *ps = gs + ATT_BR * S, *dss = ps + ATT_BR * ATT_BC, *dst = dss + ATT_BR * ATT_BC;
    float *ls = dst + ATT_BC * ST, *ds = ls + ATT_BR;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.x / a.tiles, h = blockIdx.y, group = a.NH / a.NKV, kvh = h / group;
    const uint64_t hkey = att_head_key(a, h);
    int start = offsets[b], end = offsets[b + 1];
    int64_t C = (int64_t)a.NH * HD, KC = (int64_t)a.NKV * HD;
    for (int j0 = start + (int)(blockIdx.x % a.tiles) * ATT_BC; j0 < end; j0 += a.tiles * ATT_BC) {
        int j1 = min(j0 + ATT_BC, end), nk = j1 - j0, j = j0 + lane;
        // the queries that see any of keys [j0, j1)
        int qlo = a.causal ? j0 : start, qhi = end;
        if (a.window > 0 && a.window < end - j1 + 1) qhi = j1 - 1 + a.window;
        float dka[ATT_ROWS][DPL], dva[ATT_ROWS][DPL]; // keys j0 + warp * ATT_ROWS + c, dims lane + 32 t
#pragma unroll
        for (int c = 0; c < ATT_ROWS; c++)
#pragma unroll
            for (int t = 0; t < DPL; t++)
                dka[c][t] = 0.0f, dva[c][t] = 0.0f;
        __syncthreads(); // the previous key tile is read
        att_load_rows<T, HD>(ks, S, k, a.ldkv, (int64_t)kvh * HD, j0, nk, ATT_BC);
        att_load_rows<T, HD>(vs, S, v, a.ldkv, (int64_t)kvh * HD, j0, nk, ATT_BC);
        for (int i0 = qlo; i0 < qhi; i0 += ATT_BR) {
            int i1 = min(i0 + ATT_BR, qhi), nq = i1 - i0;
            __syncthreads(); // the previous query tile is read (and K, V are written)
            att_load_rows<T, HD>(qs, S, q, a.ldq, (int64_t)h * HD, i0, nq, ATT_BR);
            att_load_rows<T, HD>(gs, S, dout, C, (int64_t)h * HD, i0, nq, ATT_BR);
            for (int r = threadIdx.x; r < ATT_BR; r += blockDim.x)
                ls[r] = r < nq ? lse[(int64_t)(i0 + r) * a.NH + h] : 0.0f;
            att_row_dots<T, HD>(ds, dout, out, C, h, i0, nq);
            __syncthreads();
            // probabilities and score gradients: warp's rows i0 + warp * ATT_ROWS + r, lane's key j
            float s[ATT_ROWS], dp[ATT_ROWS];
            att_dots<HD>(s, qs + warp * ATT_ROWS * S, ks + lane * S);
            att_dots<HD>(dp, gs + warp * ATT_ROWS * S, vs + lane * S);
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int row = warp * ATT_ROWS + r, i = i0 + row;
                bool valid = row < nq && lane < nk && att_sees(a, i, j);
                float p = valid ? expf(s[r] * a.scale - ls[row]) : 0.0f;
                float keep = valid ? att_keep(a, hkey, i, j) : 0.0f;
                float g = p * (dp[r] * keep - ds[row]) * a.scale;
                ps[row * ATT_BC + lane] = p * keep;
                dss[row * ATT_BC + lane] = g;
                s[r] = g;
            }
            att_store8(dst + lane * ST + warp * ATT_ROWS, s);
            __syncthreads();
            // dv += P^T dout, dk += dS^T q for the warp's keys
            for (int r = 0; r < nq; r++) {
                float p[ATT_ROWS], g[ATT_ROWS];
                att_load8(p, ps + r * ATT_BC + warp * ATT_ROWS);
                att_load8(g, dss + r * ATT_BC + warp * ATT_ROWS);
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    if (HD % 32 != 0 && d >= HD) continue;
                    float go = gs[r * S + d], qd = qs[r * S + d];
#pragma unroll
                    for (int c = 0; c < ATT_ROWS; c++) {
                        dva[c][t] = fmaf(p[c], go, dva[c][t]);
                        dka[c][t] = fmaf(g[c], qd, dka[c][t]);
                    }
                }
            }
            // dq += dS k for the warp's rows
            float dqa[ATT_ROWS][DPL];
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++)
#pragma unroll
                for (int t = 0; t < DPL; t++)
                    dqa[r][t] = 0.0f;
            for (int c = 0; c < nk; c++) {
                float g[ATT_ROWS];
                att_load8(g, dst + c * ST + warp * ATT_ROWS);
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    float kd = HD % 32 == 0 || d < HD ? ks[c * S + d] : 0.0f;
#pragma unroll
                    for (int r = 0; r < ATT_ROWS; r++)
                        dqa[r][t] = fmaf(g[r], kd, dqa[r][t]);
                }
            }
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int row = warp * ATT_ROWS + r;
                if (row >= nq) continue;
                float *dqrow = dq_acc + (int64_t)(i0 + row) * C + (int64_t)h * HD;
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    if (HD % 32 == 0 || d < HD) atomicAdd(dqrow + d, dqa[r][t]);
                }
            }
        }
#pragma unroll
        for (int c = 0; c < ATT_ROWS; c++) {
            int jc = j0 + warp * ATT_ROWS + c;
            if (jc >= j1) continue;
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (HD % 32 != 0 && d >= HD) continue;
                if (dk_part) {
                    int64_t x = (int64_t)jc * KC + (int64_t)kvh * HD + d;
                    dk_part[h % group * part + x] = dka[c][t], dv_part[h % group * part + x] = dva[c][t];
                    continue;
                }
                int64_t x = (int64_t)jc * a.ldkv + (int64_t)kvh * HD + d;
                dk[x] = from_f32<T>(a.accumulate ? to_f32(dk[x]) + dka[c][t] : dka[c][t]);
                dv[x] = from_f32<T>(a.accumulate ? to_f32(dv[x]) + dva[c][t] : dva[c][t]);
            }
        }
    }
}

// ---- launchers ----

// Calls f(std::integral_constant<int, HD>{}) for a supported head size; cudaErrorInvalidValue otherwise.
template <typename F> int att_dispatch_head_size(int HD, F f) {
    switch (HD) {
    case 32:
        return f(std::integral_constant<int, 32>{});
    case 64:
        return f(std::integral_constant<int, 64>{});
    case 80:
        return f(std::integral_constant<int, 80>{});
    case 96:
        return f(std::integral_constant<int, 96>{});
    case 128:
        return f(std::integral_constant<int, 128>{});
    default:
        return (int)cudaErrorInvalidValue;
    }
}

// 0 when the launchers can run s over T tokens of dtype with tiles of `tile` rows, else
// cudaErrorInvalidValue
int att_validate(attention_shape s, int T, int max_len, int tile, lf_dtype dtype) {
    bool head_size = attention_head_size_supported(s.HD);
    bool element_type = dtype == LF_F32 || dtype == LF_BF16 || dtype == LF_F16;
    if (!element_type || s.B < 0 || T < 0 || s.NH < 1 || s.NKV < 1 || s.NH % s.NKV != 0 || s.NH > 65535 ||
        !head_size || !(s.dropout < 1.0f))
        return (int)cudaErrorInvalidValue;
    if (s.B > 0 && T > 0 && (max_len < 1 || (int64_t)s.B * (((int64_t)max_len + tile - 1) / tile) > INT_MAX))
        return (int)cudaErrorInvalidValue;
    return 0;
}

att_args att_args_of(attention_shape s, lf_cuda_key key, int max_len, int tile) {
    att_args a;
    a.NH = s.NH, a.NKV = s.NKV, a.causal = s.causal, a.window = s.window;
    a.dropout = s.dropout, a.scale = 1.0f / sqrtf((float)s.HD), a.key = key;
    a.tiles = (int)(((int64_t)max_len + tile - 1) / tile);
    a.accumulate = 0;
    a.ldq = (int64_t)s.NH * s.HD, a.ldkv = (int64_t)s.NKV * s.HD;
    return a;
}

// Launches kernel over grid with smem bytes of dynamic shared memory (raising its limit past 48 KiB).
template <typename K, typename... Args>
int att_launch(K kernel, dim3 grid, size_t smem, cudaStream_t stream, Args... args) {
    int err = (int)cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err != 0) return err;
    kernel<<<grid, ATT_THREADS, smem, stream>>>(args...);
    return lf_launch_status();
}

} // namespace

int attention_head_size_supported(int HD) {
    return HD == 32 || HD == 64 || HD == 80 || HD == 96 || HD == 128;
}

size_t attention_scratch_bytes(int T, int NH, int NKV, int HD) {
    if (T <= 0 || NH <= 0 || HD <= 0) return 0;
    size_t dq = (size_t)T * (size_t)NH * (size_t)HD * sizeof(float);
    return NKV < NH ? 3 * dq : dq; // with groups, dk and dv partials of every query head
}

// a with the row strides ldq, ldkv; 0 or cudaErrorInvalidValue when they are shorter than a row
int att_strides(att_args &a, int64_t ldq, int64_t ldkv) {
    if (ldq < a.ldq || ldkv < a.ldkv) return (int)cudaErrorInvalidValue;
    a.ldq = ldq, a.ldkv = ldkv;
    return 0;
}

int attention_forward_cuda(void *out, float *lse, const void *q, const void *k, const void *v, int64_t ldq,
                           int64_t ldkv, const int32_t *offsets, int T, int max_len, attention_shape s,
                           lf_cuda_key key, lf_dtype dtype, cudaStream_t stream) {
    int err = att_validate(s, T, max_len, ATT_BR, dtype);
    if (err != 0 || s.B == 0 || T == 0) return err;
    if (!out || !lse || !q || !k || !v || !offsets) return (int)cudaErrorInvalidValue;
    att_args a = att_args_of(s, key, max_len, ATT_BR);
    if (int e = att_strides(a, ldq, ldkv)) return e;
    dim3 grid((unsigned)(s.B * a.tiles), (unsigned)s.NH);
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        return att_dispatch_head_size(s.HD, [&](auto hd) {
            constexpr int HD = decltype(hd)::value;
            return att_launch(attention_forward_kernel<E, HD>, grid,
                              att_forward_smem_floats(HD) * sizeof(float), stream, (E *)out, lse,
                              (const E *)q, (const E *)k, (const E *)v, offsets, a);
        });
    });
}

int attention_backward_cuda(void *dq, void *dk, void *dv, int accumulate, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v, int64_t ldq,
                            int64_t ldkv, const int32_t *offsets, int T, int max_len, attention_shape s,
                            lf_cuda_key key, void *scratch, lf_dtype dtype, cudaStream_t stream) {
    int err = att_validate(s, T, max_len, ATT_BC, dtype);
    if (err != 0 || s.B == 0 || T == 0) return err;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v || !offsets || !scratch)
        return (int)cudaErrorInvalidValue;
    att_args a = att_args_of(s, key, max_len, ATT_BC);
    a.accumulate = accumulate != 0;
    if (int e = att_strides(a, ldq, ldkv)) return e;
    int64_t n = (int64_t)T * s.NH * s.HD, nkv = (int64_t)T * s.NKV * s.HD;
    float *dq_acc = (float *)scratch, *dk_part = NULL, *dv_part = NULL; // partials: (NH/NKV, T, NKV*HD)
    if (s.NKV < s.NH) dk_part = dq_acc + n, dv_part = dk_part + n;
    dim3 grid((unsigned)(s.B * a.tiles), (unsigned)s.NH);
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        int status = att_dispatch_head_size(s.HD, [&](auto hd) {
            constexpr int HD = decltype(hd)::value;
            return att_launch(attention_backward_kernel<E, HD>, grid,
                              att_backward_smem_floats(HD) * sizeof(float), stream, (E *)dk, (E *)dv, dk_part,
                              dv_part, nkv, dq_acc, (const E *)dout, (const E *)out, lse, (const E *)q,
                              (const E *)k, (const E *)v, offsets, a);
        });
        if (status != 0) return status;
        attention_finish_kernel<E><<<lf_blocks(n, 256), 256, 0, stream>>>(
            (E *)dq, (E *)dk, (E *)dv, dq_acc, dk_part, dv_part, n, (int64_t)s.NH * s.HD, a.ldq, nkv,
            (int64_t)s.NKV * s.HD, a.ldkv, s.NH / s.NKV, a.accumulate);
        return lf_launch_status();
    });
}

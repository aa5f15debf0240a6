#include "ops/attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/mathf.h"
#include "core/simd.h"
#include "ops/matmul.h"
#include "ops/random.h"

enum { ATT_QB = 64 };    // query rows per block: scores are (ATT_QB, keys) BLAS products
enum { ATT_LANES = 16 }; // a block's rows of scores are padded to whole vectors of floats

// the row stride of a block's scores against nk keys: no row ends in part of a vector, so the
// loops over a row have no scalar remainder (tweets: rows of 20-60 keys)
static int row_stride(int nk) { return (nk + ATT_LANES - 1) / ATT_LANES * ATT_LANES; }

// per thread: the probabilities and their gradients of one block of queries
size_t attention_scratch_floats(int max_len, int nthreads) {
    return 2 * (size_t)ATT_QB * (size_t)row_stride(max_len) * (size_t)nthreads;
}

// the keys [*lo, *hi) that query i of a sequence [start, end) attends to
static void key_range(attention_shape s, int start, int end, int i, int *lo, int *hi) {
    *lo = start;
    *hi = s.causal ? i + 1 : end;
    if (s.window > 0 && i - s.window + 1 > *lo) *lo = i - s.window + 1;
}

// the dropout stream of head h: the mask of (h, i, j) does not depend on T, so appending a sequence
// to a batch leaves the masks of the others as they were
static uint64_t head_key(attention_shape s, int h) { return lf_stream_key(s.key, (uint64_t)h); }

// the dropout scale of probability (i, j) of the head whose stream is hkey, 1 when not dropped out
static float prob_keep(attention_shape s, uint64_t hkey, int i, int j) {
    if (s.dropout <= 0.0f) return 1.0f;
    return lf_dropout_scale(hkey, (uint64_t)i << 32 | (uint32_t)j, s.dropout);
}

// A block of queries [i0, i1) of one head in a sequence [start, end), against the keys [lo, lo + nk)
// that any of them sees.
typedef struct {
    int start, end, i0, i1, lo, nk, h;
} att_block;

static att_block block_at(attention_shape s, int start, int end, int i0, int h) {
    att_block k = {start, end, i0, i0 + ATT_QB < end ? i0 + ATT_QB : end, 0, 0, h};
    int lo, hi, unused;
    key_range(s, start, end, i0, &lo, &unused);
    key_range(s, start, end, k.i1 - 1, &unused, &hi);
    k.lo = lo;
    k.nk = hi - lo;
    return k;
}

// The loops over a row of scores pr: (ld,) run over whole vectors; the row's keys are [lo, hi) of it
// (lo < hi <= ld), the rest (keys it does not see, the padding) is masked out.

// the log-sum-exp of the row's scores over its keys
LF_VECTOR_CLONES static float row_logsumexp(const float *pr, int ld, int lo, int hi) {
    float m = -INFINITY, l = 0.0f;
#pragma omp simd reduction(max : m)
    for (int c = 0; c < ld; c++) {
        float x = pr[c]; // read in whole vectors, then masked
        x = c >= lo && c < hi ? x : -INFINITY;
        m = x > m ? x : m;
    }
#pragma omp simd reduction(+ : l)
    for (int c = 0; c < ld; c++) {
        float x = exp_nonpositive_f32(pr[c] - m);
        l += c >= lo && c < hi ? x : 0.0f;
    }
    return m + logf(l);
}

// pr[c] = exp(pr[c] - l) for the row's keys, 0 for the rest of the row
LF_VECTOR_CLONES static void row_probs(float *pr, int ld, int lo, int hi, float l) {
#pragma omp simd
    for (int c = 0; c < ld; c++) {
        float x = exp_nonpositive_f32(pr[c] - l);
        pr[c] = c >= lo && c < hi ? x : 0.0f;
    }
}

// p: (i1 - i0, ld) = softmax rows of q k^T / sqrt(HD), 0 outside each row's keys; the rows'
// log-sum-exp is written to lse_out (forward), or read from lse_in when lse_out is NULL (backward)
static void block_probs(float *p, float *lse_out, const float *lse_in, const float *q, const float *kh,
                        att_block k, attention_shape s) {
    int C = s.NH * s.HD, KC = s.NKV * s.HD, rows = k.i1 - k.i0, ld = row_stride(k.nk);
    sgemm_nt(rows, k.nk, s.HD, 1.0f / sqrtf((float)s.HD), q + (size_t)k.i0 * C + (size_t)k.h * s.HD, C,
             kh + (size_t)k.lo * KC, KC, 0.0f, p, ld);
    for (int r = 0; r < rows; r++) {
        int i = k.i0 + r, lo, hi;
        key_range(s, k.start, k.end, i, &lo, &hi);
        float *pr = p + (size_t)r * ld;
        size_t at = (size_t)i * s.NH + k.h;
        if (lse_out != NULL) lse_out[at] = row_logsumexp(pr, ld, lo - k.lo, hi - k.lo);
        row_probs(pr, ld, lo - k.lo, hi - k.lo, lse_out != NULL ? lse_out[at] : lse_in[at]);
    }
}

// the dropout of one row of probabilities pr: (ld,) of query i against keys j0 ..
LF_VECTOR_CLONES static void row_dropout(float *pr, int ld, uint64_t hkey, int i, int j0, float p) {
#pragma omp simd
    for (int c = 0; c < ld; c++)
        pr[c] *= lf_dropout_scale(hkey, (uint64_t)i << 32 | (uint32_t)(j0 + c), p);
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *offsets, attention_shape s, float *scratch) {
    int T = offsets[s.B], C = s.NH * s.HD, KC = s.NKV * s.HD, group = s.NH / s.NKV;
    size_t per_thread = attention_scratch_floats(T, 1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < (int64_t)s.B * s.NH; task++) {
        int b = (int)(task / s.NH), h = (int)(task % s.NH);
        float *p = scratch + (size_t)omp_get_thread_num() * per_thread;
        const float *kh = k + (size_t)(h / group) * s.HD, *vh = v + (size_t)(h / group) * s.HD;
        uint64_t hkey = head_key(s, h);
        for (int i0 = offsets[b]; i0 < offsets[b + 1]; i0 += ATT_QB) {
            att_block blk = block_at(s, offsets[b], offsets[b + 1], i0, h);
            block_probs(p, lse, NULL, q, kh, blk, s);
            int ld = row_stride(blk.nk);
            for (int r = 0; s.dropout > 0.0f && r < blk.i1 - blk.i0; r++)
                row_dropout(p + (size_t)r * ld, ld, hkey, blk.i0 + r, blk.lo, s.dropout);
            sgemm_nn(blk.i1 - blk.i0, s.HD, blk.nk, 1.0f, p, ld, vh + (size_t)blk.lo * KC, KC, 0.0f,
                     out + (size_t)blk.i0 * C + (size_t)h * s.HD, C);
        }
    }
}

// one row of a block in backward: dp = d scores from dp = d(dropped probs) and the probabilities
// pr, which become the dropped probabilities; D = dout_i . out_i = sum_j dP_ij P_ij
LF_VECTOR_CLONES static void row_scores_backward(float *pr, float *dp, int ld, const float *g, const float *o,
                                                 attention_shape s, uint64_t hkey, int i, int j0,
                                                 float scale) {
    float D = 0.0f;
#pragma omp simd reduction(+ : D)
    for (int d = 0; d < s.HD; d++)
        D += g[d] * o[d];
#pragma omp simd
    for (int c = 0; c < ld; c++) { // the padding: pr 0, dp never read
        float keep = prob_keep(s, hkey, i, j0 + c);
        dp[c] = pr[c] * (dp[c] * keep - D) * scale; // d scores
        pr[c] *= keep;                              // dropped probs
    }
}

// one block of query head h: its dq rows = (accumulate: += ), dk, dv rows of its key head += ; p, dp: scratch
static void attention_backward_block(float *dq, float *dk, float *dv, int accumulate, const float *dout,
                                     const float *out, const float *lse, const float *q, const float *k,
                                     const float *v, att_block blk, attention_shape s, float *p, float *dp) {
    int C = s.NH * s.HD, KC = s.NKV * s.HD, kvh = blk.h / (s.NH / s.NKV), rows = blk.i1 - blk.i0;
    int ld = row_stride(blk.nk);
    float scale = 1.0f / sqrtf((float)s.HD);
    size_t qo = (size_t)blk.i0 * C + (size_t)blk.h * s.HD, ko = (size_t)blk.lo * KC + (size_t)kvh * s.HD;
    uint64_t hkey = head_key(s, blk.h);
    block_probs(p, NULL, lse, q, k + (size_t)kvh * s.HD, blk, s);
    sgemm_nt(rows, blk.nk, s.HD, 1.0f, dout + qo, C, v + ko, KC, 0.0f, dp, ld); // d(dropped probs)
    for (int r = 0; r < rows; r++)
        row_scores_backward(p + (size_t)r * ld, dp + (size_t)r * ld, ld, dout + qo + (size_t)r * C,
                            out + qo + (size_t)r * C, s, hkey, blk.i0 + r, blk.lo, scale);
    sgemm_tn(blk.nk, s.HD, rows, 1.0f, p, ld, dout + qo, C, 1.0f, dv + ko, KC);
    sgemm_nn(rows, s.HD, blk.nk, 1.0f, dp, ld, k + ko, KC, accumulate ? 1.0f : 0.0f, dq + qo, C);
    sgemm_tn(blk.nk, s.HD, rows, 1.0f, dp, ld, q + qo, C, 1.0f, dk + ko, KC);
}

void attention_backward(float *dq, float *dk, float *dv, int accumulate, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const int32_t *offsets, attention_shape s, float *scratch) {
    int T = offsets[s.B], group = s.NH / s.NKV;
    size_t per_thread = attention_scratch_floats(T, 1);
    // one task per (sequence, key/value head): all its query heads, so dk / dv need no atomics
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < (int64_t)s.B * s.NKV; task++) {
        int b = (int)(task / s.NKV), kvh = (int)(task % s.NKV);
        float *p = scratch + (size_t)omp_get_thread_num() * per_thread, *dp = p + per_thread / 2;
        for (int t = offsets[b]; t < offsets[b + 1] && !accumulate; t++) { // this task's dk, dv rows
            memset(dk + (size_t)t * s.NKV * s.HD + (size_t)kvh * s.HD, 0, (size_t)s.HD * sizeof(float));
            memset(dv + (size_t)t * s.NKV * s.HD + (size_t)kvh * s.HD, 0, (size_t)s.HD * sizeof(float));
        }
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int i0 = offsets[b]; i0 < offsets[b + 1]; i0 += ATT_QB)
                attention_backward_block(dq, dk, dv, accumulate, dout, out, lse, q, k, v,
                                         block_at(s, offsets[b], offsets[b + 1], i0, h), s, p, dp);
    }
}

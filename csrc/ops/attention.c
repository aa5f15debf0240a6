#include "ops/attention.h"

#include <math.h>
#include <omp.h>

#include "ops/random.h"

size_t attention_scratch_floats(int max_len, int nthreads) { return (size_t)max_len * (size_t)nthreads; }

// the keys [*lo, *hi) that query i of a sequence [start, end) attends to
static void key_range(attention_shape s, int start, int end, int i, int *lo, int *hi) {
    *lo = start;
    *hi = s.causal ? i + 1 : end;
    if (s.window > 0 && i - s.window + 1 > *lo) *lo = i - s.window + 1;
}

// the dropout scale of probability (h, i, j), 1 when not dropped out
static float prob_keep(attention_shape s, int T, int h, int i, int j) {
    if (s.dropout <= 0.0f) return 1.0f;
    uint64_t idx = ((uint64_t)h * (uint64_t)T + (uint64_t)i) * (uint64_t)T + (uint64_t)j;
    return lf_uniform(s.key, idx) >= s.dropout ? 1.0f / (1.0f - s.dropout) : 0.0f;
}

static float dot(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int d = 0; d < n; d++)
        acc += a[d] * b[d];
    return acc;
}

// one query row i, head h: scores into p, returns the log-sum-exp
static float attention_row_scores(float *p, const float *qi, const float *k, int lo, int hi, int kv_stride,
                                  int HD, float scale) {
    float mx = -INFINITY;
    for (int j = lo; j < hi; j++) {
        p[j - lo] = dot(qi, k + (size_t)j * kv_stride, HD) * scale;
        mx = p[j - lo] > mx ? p[j - lo] : mx;
    }
    float sum = 0.0f;
    for (int j = lo; j < hi; j++)
        sum += expf(p[j - lo] - mx);
    return mx + logf(sum);
}

static int sequence_of(const int32_t *offsets, int B, int t) {
    int lo = 0, hi = B;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (offsets[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *offsets, attention_shape s, float *scratch) {
    int T = offsets[s.B], C = s.NH * s.HD, KC = s.NKV * s.HD, group = s.NH / s.NKV;
    float scale = 1.0f / sqrtf((float)s.HD);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t row = 0; row < (int64_t)T * s.NH; row++) {
        int i = (int)(row / s.NH), h = (int)(row % s.NH), b = sequence_of(offsets, s.B, i), lo, hi;
        key_range(s, offsets[b], offsets[b + 1], i, &lo, &hi);
        float *p = scratch + (size_t)omp_get_thread_num() * (size_t)(offsets[s.B]);
        const float *kh = k + (size_t)(h / group) * s.HD, *vh = v + (size_t)(h / group) * s.HD;
        float l = attention_row_scores(p, q + (size_t)i * C + (size_t)h * s.HD, kh, lo, hi, KC, s.HD, scale);
        lse[(size_t)i * s.NH + h] = l;
        float *o = out + (size_t)i * C + (size_t)h * s.HD;
        for (int d = 0; d < s.HD; d++)
            o[d] = 0.0f;
        for (int j = lo; j < hi; j++) {
            float pj = expf(p[j - lo] - l) * prob_keep(s, T, h, i, j);
            const float *vj = vh + (size_t)j * KC;
            for (int d = 0; d < s.HD; d++)
                o[d] += pj * vj[d];
        }
    }
}

// one (sequence, key/value head) pair: all its query heads and rows, so dk/dv need no atomics
static void attention_backward_group(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                     const float *lse, const float *q, const float *k, const float *v,
                                     int start, int end, int kvh, int T, attention_shape s, float *p) {
    int C = s.NH * s.HD, KC = s.NKV * s.HD, group = s.NH / s.NKV;
    float scale = 1.0f / sqrtf((float)s.HD);
    const float *kh = k + (size_t)kvh * s.HD, *vh = v + (size_t)kvh * s.HD;
    float *dkh = dk + (size_t)kvh * s.HD, *dvh = dv + (size_t)kvh * s.HD;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int i = start; i < end; i++) {
            int lo, hi;
            key_range(s, start, end, i, &lo, &hi);
            size_t qo = (size_t)i * C + (size_t)h * s.HD;
            const float *qi = q + qo, *doi = dout + qo;
            float l = lse[(size_t)i * s.NH + h], D = dot(doi, out + qo, s.HD);
            for (int j = lo; j < hi; j++)
                p[j - lo] = expf(dot(qi, kh + (size_t)j * KC, s.HD) * scale - l);
            for (int j = lo; j < hi; j++) {
                float keep = prob_keep(s, T, h, i, j), pj = p[j - lo];
                float dp = dot(doi, vh + (size_t)j * KC, s.HD) * keep, ds = pj * (dp - D) * scale;
                float *dvj = dvh + (size_t)j * KC, *dkj = dkh + (size_t)j * KC;
                const float *kj = kh + (size_t)j * KC;
                for (int d = 0; d < s.HD; d++) {
                    dvj[d] += pj * keep * doi[d];
                    dkj[d] += ds * qi[d];
                    dq[qo + d] += ds * kj[d];
                }
            }
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const int32_t *offsets, attention_shape s, float *scratch) {
    int T = offsets[s.B];
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < (int64_t)s.B * s.NKV; task++) {
        int b = (int)(task / s.NKV), kvh = (int)(task % s.NKV);
        float *p = scratch + (size_t)omp_get_thread_num() * (size_t)T;
        attention_backward_group(dq, dk, dv, dout, out, lse, q, k, v, offsets[b], offsets[b + 1], kvh, T, s,
                                 p);
    }
}

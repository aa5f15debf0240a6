#include "ops/dropout.h"

#include <string.h>

#include "core/simd.h"
#include "ops/random.h"

// elements first .. first + n - 1: out = in * mask (accumulate: out += )
LF_VECTOR_CLONES static void dropout_run(float *out, const float *in, int64_t first, int64_t n, float p,
                                         uint64_t key, int accumulate) {
    if (accumulate) {
        for (int64_t i = 0; i < n; i++)
            out[i] += in[i] * lf_dropout_scale(key, (uint64_t)(first + i), p);
    } else {
        for (int64_t i = 0; i < n; i++)
            out[i] = in[i] * lf_dropout_scale(key, (uint64_t)(first + i), p);
    }
}

static void dropout_apply(float *out, const float *in, int64_t n, float p, uint64_t key, int accumulate) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += LF_VECTOR_CHUNK)
        dropout_run(out + c0, in + c0, c0, n - c0 < LF_VECTOR_CHUNK ? n - c0 : LF_VECTOR_CHUNK, p, key,
                    accumulate);
}

void dropout_forward(float *out, const float *in, int64_t n, float p, uint64_t key) {
    if (p <= 0.0f) {
        if (out != in) memcpy(out, in, (size_t)n * sizeof(float));
        return;
    }
    dropout_apply(out, in, n, p, key, 0);
}

void dropout_backward(float *din, const float *dout, int64_t n, float p, uint64_t key) {
    if (p > 0.0f) {
        dropout_apply(din, dout, n, p, key, 1);
        return;
    }
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        din[i] += dout[i];
}

// ---- the mask kept as bits: drawn once in forward, applied again without drawing ----

// elements first .. first + n - 1 (first a multiple of 64): out = in * mask, and the mask's words
// bits[0 ..] (bit j of a word: element 64 * word + j kept)
LF_VECTOR_CLONES static void dropout_bits_run(float *out, uint64_t *bits, const float *in, int64_t first,
                                              int64_t n, float p, uint64_t key) {
    float scale = 1.0f / (1.0f - p);
    for (int64_t w = 0; w * 64 < n; w++) {
        int64_t len = n - w * 64 < 64 ? n - w * 64 : 64;
        const float *x = in + w * 64;
        float *o = out + w * 64;
        uint64_t word = 0;
        for (int64_t j = 0; j < len; j++) {
            uint64_t keep = lf_uniform(key, (uint64_t)(first + w * 64 + j)) >= p;
            o[j] = x[j] * (keep ? scale : 0.0f); // lf_dropout_scale's factor: the same bits as dropout_run
            word |= keep << j;
        }
        bits[w] = word;
    }
}

// out = (accumulate: out +=) in * the mask of bits[0 ..], n elements
LF_VECTOR_CLONES static void dropout_bits_apply_run(float *out, const float *in, const uint64_t *bits,
                                                    int64_t n, float scale, int accumulate) {
    for (int64_t w = 0; w * 64 < n; w++) {
        int64_t len = n - w * 64 < 64 ? n - w * 64 : 64;
        const float *x = in + w * 64;
        float *o = out + w * 64;
        uint64_t word = bits[w];
        if (accumulate)
            for (int64_t j = 0; j < len; j++)
                o[j] += x[j] * ((word >> j & 1) ? scale : 0.0f);
        else
            for (int64_t j = 0; j < len; j++)
                o[j] = x[j] * ((word >> j & 1) ? scale : 0.0f);
    }
}

void dropout_forward_bits(float *out, uint64_t *bits, const float *in, int64_t n, float p, uint64_t key) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += LF_VECTOR_CHUNK)
        dropout_bits_run(out + c0, bits + c0 / 64, in + c0, c0,
                         n - c0 < LF_VECTOR_CHUNK ? n - c0 : LF_VECTOR_CHUNK, p, key);
}

void dropout_apply_bits(float *out, const float *in, const uint64_t *bits, int64_t n, float p,
                        int accumulate) {
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += LF_VECTOR_CHUNK)
        dropout_bits_apply_run(out + c0, in + c0, bits + c0 / 64,
                               n - c0 < LF_VECTOR_CHUNK ? n - c0 : LF_VECTOR_CHUNK, scale, accumulate);
}

void dropout_backward_inplace(float *d, int64_t n, float p, uint64_t key) {
    dropout_forward(d, d, n, p, key);
}

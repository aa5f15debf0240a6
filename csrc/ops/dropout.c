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

void dropout_backward_inplace(float *d, int64_t n, float p, uint64_t key) {
    dropout_forward(d, d, n, p, key);
}

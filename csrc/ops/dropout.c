#include "ops/dropout.h"

#include <string.h>

#include "ops/random.h"

static inline float keep_scale(uint64_t key, int64_t i, float p, float scale) {
    return lf_uniform(key, (uint64_t)i) >= p ? scale : 0.0f;
}

void dropout_forward(float *out, const float *in, int64_t n, float p, uint64_t key) {
    if (p <= 0.0f) {
        if (out != in) memcpy(out, in, (size_t)n * sizeof(float));
        return;
    }
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        out[i] = in[i] * keep_scale(key, i, p, scale);
}

void dropout_backward(float *din, const float *dout, int64_t n, float p, uint64_t key) {
    float scale = p <= 0.0f ? 1.0f : 1.0f / (1.0f - p);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        din[i] += dout[i] * (p <= 0.0f ? 1.0f : keep_scale(key, i, p, scale));
}

void dropout_backward_inplace(float *d, int64_t n, float p, uint64_t key) {
    dropout_forward(d, d, n, p, key);
}

#include "ops/activation.h"

#include <math.h>

#include "core/mathf.h"
#include "core/simd.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

LF_VECTOR_CLONES static void gelu_forward_run(float *out, const float *inp, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.5f * inp[i] * (1.0f + erf_f32(inp[i] * INV_SQRT2));
}

LF_VECTOR_CLONES static void gelu_backward_run(float *dinp, const float *inp, const float *dout, int64_t n,
                                               int accumulate) {
    // dinp may be dout: each element is read before it is written
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erf_f32(x * INV_SQRT2)),
              pdf = INV_SQRT_2PI * exp_nonpositive_f32(-0.5f * x * x);
        float d = dout[i] * (cdf + x * pdf);
        dinp[i] = accumulate ? dinp[i] + d : d;
    }
}

static int64_t chunk(int64_t n, int64_t c0) { return n - c0 < LF_VECTOR_CHUNK ? n - c0 : LF_VECTOR_CHUNK; }

void gelu_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += LF_VECTOR_CHUNK)
        gelu_forward_run(out + c0, inp + c0, chunk(n, c0));
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n, int accumulate) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += LF_VECTOR_CHUNK)
        gelu_backward_run(dinp + c0, inp + c0, dout + c0, chunk(n, c0), accumulate);
}

void tanh_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *out, const float *dout, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

#include "ops/activation.h"

#include <math.h>

#include "core/simd.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

// erf(x) as Eigen's rational approximation (odd degree 13 / even degree 8) on [-4, 4], where
// f32 erf reaches +-1; no libm call, so loops over it vectorize
static inline float erf_f32(float x) {
    x = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x; // not fminf / fmaxf: libm calls
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

// exp(y) for y in [-87, 0]: y = n ln2 + r, |r| <= ln2 / 2, degree-7 Taylor polynomial of e^r
// times 2^n built in the exponent bits (no libm call); n rounds through the 1.5 * 2^23 shift
static inline float exp_nonpositive_f32(float y) {
    y = y < -87.0f ? -87.0f : y;
    union {
        float f;
        int32_t i;
    } shifted = {y * 1.44269504088896341f + 12582912.0f}, scale;
    float n = shifted.f - 12582912.0f;
    float r = (y - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float e = 1.0f / 5040.0f;
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    scale.i = (shifted.i - 0x4B400000 + 127) << 23;
    return e * scale.f;
}

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

// Scalar float functions without libm calls, so that loops over them vectorize (the callers'
// LF_VECTOR_CLONES loops): the GELU's erf, and exp on the non-positive arguments of GELU's
// density and of softmax after its maximum is subtracted.
#pragma once

#include <stdint.h>

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

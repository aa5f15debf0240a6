// f16 / bf16 <-> f32 conversion, round-to-nearest-even, bit-identical to NumPy's float16
// conversions (NaN payloads kept, as NumPy does) and to PyTorch's bfloat16 on every non-NaN
// value (a bf16 NaN made from an f32 NaN keeps its sign and top payload bits, quiet bit set).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"

// The bits of an f32 and back.
static inline uint32_t lf_float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float lf_bits_float(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

// NumPy's npy_halfbits_to_floatbits: exact for every value; Inf/NaN keep their payload.
static inline float lf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = h & 0x7c00u;
    uint32_t sig = h & 0x03ffu;
    if (exp == 0x7c00u) return lf_bits_float(sign | 0x7f800000u | (sig << 13));
    if (exp != 0) return lf_bits_float(sign | (((uint32_t)(h & 0x7fffu) + 0x1c000u) << 13));
    if (sig == 0) return lf_bits_float(sign);
    int shift = __builtin_clz(sig) - 21; // normalise the subnormal: leading 1 to bit 10
    sig = (sig << shift) & 0x03ffu;
    return lf_bits_float(sign | ((uint32_t)(113 - shift) << 23) | (sig << 13));
}

static inline float lf_bf16_to_f32(uint16_t h) { return lf_bits_float((uint32_t)h << 16); }

uint16_t lf_f32_to_f16(float x);

// Round to nearest even; a NaN stays a quiet NaN with its sign and top payload bits. Branch-free, so
// loops over it vectorize (ops/matmul_bf16.c rounds every bf16 product's input with it).
static inline uint16_t lf_f32_to_bf16(float x) {
    uint32_t f = lf_float_bits(x);
    uint32_t nan = (f >> 16) | 0x0040u, rounded = (f + 0x7fffu + ((f >> 16) & 1u)) >> 16;
    return (uint16_t)((f & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// dst[i] = (float)src[i] for n elements of src's dtype (any lf_dtype; integers convert as C
// casts do). OpenMP-parallel. Returns LF_OK, or LF_EINVAL for an unknown dtype or NULL pointer.
int lf_convert_to_f32(const void *src, lf_dtype src_dtype, float *dst, size_t n);
// dst[i] = src[i] narrowed to dst_dtype, which must be F32, F16 or BF16. OpenMP-parallel.
int lf_convert_from_f32(const float *src, lf_dtype dst_dtype, void *dst, size_t n);

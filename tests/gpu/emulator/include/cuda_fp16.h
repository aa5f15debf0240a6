// __half for the CUDA emulator (cuda_runtime.h): IEEE binary16 bits, converted from f32 with round to
// nearest even (subnormals, overflow to infinity, NaN to the canonical 0x7fff as the device does).
#pragma once

#include <cuda_runtime.h>

static inline unsigned short emu_f32_to_f16_bits(float f) {
    const uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7fffu;                           // NaN
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); // from 65520 up: infinity
    if (a < 0x38800000u) // below 2^-14: a subnormal (or zero), in units of 2^-24, rounded to nearest even
        return (unsigned short)(sign | (uint32_t)rintf(__uint_as_float(a) * 16777216.0f));
    uint32_t h = (a - 0x38000000u) >> 13, rest = a & 0x1fffu; // exponent rebiased by 127 - 15
    h += rest > 0x1000u || (rest == 0x1000u && (h & 1u));
    return (unsigned short)(sign | h);
}

static inline float emu_f16_bits_to_f32(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
    const float magnitude = (float)mant * (1.0f / 16777216.0f); // exact: mant * 2^-24
    return sign ? -magnitude : magnitude;
}

struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(emu_f32_to_f16_bits(f)) {}
    __half(double f) : __x(emu_f32_to_f16_bits((float)f)) {}
    operator float() const { return emu_f16_bits_to_f32(__x); }
};

struct __half2 {
    __half x, y;
};

static inline float __half2float(__half h) { return emu_f16_bits_to_f32(h.__x); }
static inline __half emu_half_from_bits(unsigned short bits) {
    __half h;
    h.__x = bits;
    return h;
}
static inline __half __float2half_rn(float f) { return emu_half_from_bits(emu_f32_to_f16_bits(f)); }
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __half __ushort_as_half(unsigned short bits) { return emu_half_from_bits(bits); }
static inline __half atomicAdd(__half *p, __half v) {
    const __half old = *p;
    *p = __float2half_rn(__half2float(old) + __half2float(v));
    return old;
}

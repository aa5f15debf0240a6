// __nv_bfloat16 for the CUDA emulator (cuda_runtime.h): the top 16 bits of an f32, converted with round
// to nearest even (NaN to the canonical 0x7fff as the device does).
#pragma once

#include <cuda_runtime.h>

static inline unsigned short emu_f32_to_bf16_bits(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu; // NaN
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float emu_bf16_bits_to_f32(unsigned short b) { return __uint_as_float((uint32_t)b << 16); }

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(emu_f32_to_bf16_bits(f)) {}
    __nv_bfloat16(double f) : __x(emu_f32_to_bf16_bits((float)f)) {}
    operator float() const { return emu_bf16_bits_to_f32(__x); }
};

struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline float __bfloat162float(__nv_bfloat16 b) { return emu_bf16_bits_to_f32(b.__x); }
static inline __nv_bfloat16 emu_bfloat16_from_bits(unsigned short bits) {
    __nv_bfloat16 b;
    b.__x = bits;
    return b;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    return emu_bfloat16_from_bits(emu_f32_to_bf16_bits(f));
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) { return emu_bfloat16_from_bits(bits); }
static inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v) {
    const __nv_bfloat16 old = *p;
    *p = __float2bfloat16_rn(__bfloat162float(old) + __bfloat162float(v));
    return old;
}

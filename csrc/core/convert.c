#include "core/convert.h"

#include <string.h>

#include "core/error.h"

uint16_t lf_f32_to_f16(float x) {
    uint32_t f = lf_float_bits(x);
    uint16_t sign = (uint16_t)((f & 0x80000000u) >> 16);
    uint32_t exp = f & 0x7f800000u;
    uint32_t sig = f & 0x007fffffu;
    if (exp >= 0x47800000u) { // overflow, Inf or NaN
        if (exp == 0x7f800000u && sig != 0) {
            uint16_t nan = (uint16_t)(0x7c00u + (sig >> 13));
            return (uint16_t)(sign + (nan == 0x7c00u ? 0x7c01u : nan));
        }
        return (uint16_t)(sign + 0x7c00u);
    }
    if (exp <= 0x38000000u) { // a half subnormal or zero
        if (exp < 0x33000000u) return sign;
        uint32_t e = exp >> 23;
        uint32_t s = (0x00800000u + sig) >> (113 - e);
        // a tie rounds to even; bits shifted out above decide that it is not a tie
        if ((s & 0x00003fffu) != 0x00001000u || (f & 0x000007ffu)) s += 0x00001000u;
        return (uint16_t)(sign + (s >> 13));
    }
    uint16_t h_exp = (uint16_t)((exp - 0x38000000u) >> 13);
    if ((sig & 0x00003fffu) != 0x00001000u) sig += 0x00001000u;
    // a carry out of the significand increments the exponent, up to Inf: both correct
    return (uint16_t)(sign + (uint16_t)(sig >> 13) + h_exp);
}

// src: (n,) of src_dtype -> dst: (n,) f32
int lf_convert_to_f32(const void *src, lf_dtype src_dtype, float *dst, size_t n) {
    if (n == 0) return LF_OK;
    if (src == NULL || dst == NULL) return lf_error(LF_EINVAL, "lf_convert_to_f32: NULL buffer");
    long long count = (long long)n;
    switch (src_dtype) {
    case LF_F32:
        if ((const void *)dst != src) memmove(dst, src, n * sizeof(float));
        return LF_OK;
    case LF_F16: {
        const uint16_t *s = src;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            dst[i] = lf_f16_to_f32(s[i]);
        return LF_OK;
    }
    case LF_BF16: {
        const uint16_t *s = src;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            dst[i] = lf_bf16_to_f32(s[i]);
        return LF_OK;
    }
    case LF_I32: {
        const int32_t *s = src;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            dst[i] = (float)s[i];
        return LF_OK;
    }
    case LF_I64: {
        const int64_t *s = src;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            dst[i] = (float)s[i];
        return LF_OK;
    }
    case LF_U8: {
        const uint8_t *s = src;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            dst[i] = (float)s[i];
        return LF_OK;
    }
    }
    return lf_error(LF_EINVAL, "lf_convert_to_f32: invalid source dtype code %d", (int)src_dtype);
}

// src: (n,) f32 -> dst: (n,) of dst_dtype (F32, F16 or BF16)
int lf_convert_from_f32(const float *src, lf_dtype dst_dtype, void *dst, size_t n) {
    if (n == 0) return LF_OK;
    if (src == NULL || dst == NULL) return lf_error(LF_EINVAL, "lf_convert_from_f32: NULL buffer");
    long long count = (long long)n;
    if (dst_dtype == LF_F32) {
        if (dst != (const void *)src) memmove(dst, src, n * sizeof(float));
        return LF_OK;
    }
    if (dst_dtype == LF_F16) {
        uint16_t *d = dst;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            d[i] = lf_f32_to_f16(src[i]);
        return LF_OK;
    }
    if (dst_dtype == LF_BF16) {
        uint16_t *d = dst;
#pragma omp parallel for schedule(static) if (count > 32768)
        for (long long i = 0; i < count; i++)
            d[i] = lf_f32_to_bf16(src[i]);
        return LF_OK;
    }
    return lf_error(LF_EINVAL,
                    "lf_convert_from_f32: destination dtype must be float32, float16 or bfloat16, got %s",
                    lf_dtype_name(dst_dtype) ? lf_dtype_name(dst_dtype) : "an invalid code");
}

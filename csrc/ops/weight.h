// A read-only weight matrix as stored: f32, f16 or bf16. Products convert it block by block
// into f32 scratch (ops/matmul.c), so large checkpoints can stay in their stored dtype.
#pragma once

#include <stdint.h>
#include <string.h>

typedef enum { LF_WEIGHT_F32 = 0, LF_WEIGHT_F16 = 1, LF_WEIGHT_BF16 = 2 } lf_weight_dtype;

typedef struct {
    const void *data; // (rows, cols) row-major, in dtype
    int dtype;        // lf_weight_dtype
} lf_weight;

static inline lf_weight lf_weight_f32(const float *data) { return (lf_weight){data, LF_WEIGHT_F32}; }

static inline float lf_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float lf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000 | (man << 13); // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign; // zero
    } else {         // subnormal: normalize
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// dst[i] = w.data[offset + i] as f32, for i < n.
void weight_to_f32(float *dst, lf_weight w, int64_t offset, int64_t n);
// 1 when every value is finite; else 0 and *bad_index = the first offending element.
int weight_all_finite(lf_weight w, int64_t n, int64_t *bad_index);

// A read-only weight matrix as stored: f32, f16 or bf16. Products convert it block by block
// into f32 scratch (ops/matmul.c), so large checkpoints can stay in their stored dtype.
#pragma once

#include <stdint.h>
#include <string.h>

#include "core/convert.h"
#include "core/dtype.h"

typedef struct {
    const void *data; // (rows, cols) row-major, in dtype
    lf_dtype dtype;   // LF_F32, LF_F16 or LF_BF16
} lf_weight;

static inline lf_weight lf_weight_f32(const float *data) { return (lf_weight){data, LF_F32}; }

// dst[i] = w.data[offset + i] as f32, for i < n.
void weight_to_f32(float *dst, lf_weight w, int64_t offset, int64_t n);
// 1 when every value is finite; else 0 and *bad_index = the first offending element.
int weight_all_finite(lf_weight w, int64_t n, int64_t *bad_index);

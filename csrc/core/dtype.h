// The element types of the C core, one enum for CPU and CUDA: stored weights (f32, f16, bf16),
// activations on CUDA (the same three) and the integer arrays handed over from NumPy.
#pragma once

#include <stddef.h>

typedef enum lf_dtype {
    LF_F32 = 0,
    LF_F16 = 1,
    LF_BF16 = 2,
    LF_I32 = 3,
    LF_I64 = 4,
    LF_U8 = 5,
} lf_dtype;

#define LF_DTYPE_COUNT 6

// Bytes per element of dtype, or 0 for a value that is not an lf_dtype.
size_t lf_dtype_size(lf_dtype dtype);
// The dtype's name as NumPy spells it ("float32", "bfloat16", ...), or NULL.
const char *lf_dtype_name(lf_dtype dtype);
// Parses a NumPy-style name ("float32", "bfloat16", ...) into *dtype; LF_EINVAL naming it when unknown.
int lf_dtype_from_name(const char *name, lf_dtype *dtype);
// 1 for LF_F32, LF_F16 and LF_BF16 (the float formats weights are stored in), else 0.
static inline int lf_dtype_is_float(lf_dtype dtype) {
    return dtype == LF_F32 || dtype == LF_F16 || dtype == LF_BF16;
}

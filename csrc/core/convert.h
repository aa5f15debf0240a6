// f16 / bf16 <-> f32 conversion, round-to-nearest-even, bit-identical to NumPy's float16
// conversions (NaN payloads kept, as NumPy does) and to PyTorch's bfloat16 on every non-NaN
// value (a bf16 NaN made from an f32 NaN keeps its sign and top payload bits, quiet bit set).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

float lf_f16_to_f32(uint16_t h);
uint16_t lf_f32_to_f16(float x);
float lf_bf16_to_f32(uint16_t h);
uint16_t lf_f32_to_bf16(float x);

// dst[i] = (float)src[i] for n elements of src's dtype (any lf_dtype; integers convert as C
// casts do). OpenMP-parallel. Returns LF_OK, or LF_EINVAL for an unknown dtype or NULL pointer.
int lf_convert_to_f32(const void *src, lf_dtype src_dtype, float *dst, size_t n);
// dst[i] = src[i] narrowed to dst_dtype, which must be F32, F16 or BF16. OpenMP-parallel.
int lf_convert_from_f32(const float *src, lf_dtype dst_dtype, void *dst, size_t n);

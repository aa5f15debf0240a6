// Element type conversion on the device (csrc/core/convert.h on the GPU): f32 / f16 / bf16 in
// any direction, round to nearest even, as the CPU converts finite values.
#pragma once

#include "common.cuh"

// dst: (n,) of dst_dtype = src: (n,) of src_dtype; dst must not overlap src unless equal dtypes
int convert_cuda(void *dst, lf_dtype dst_dtype, const void *src, lf_dtype src_dtype, int64_t n,
                 cudaStream_t stream);

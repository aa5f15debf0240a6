// Embedding lookups over packed tokens (csrc/ops/embedding.h on the GPU).
#pragma once

#include "common.cuh"

// out: (T, C) of dtype (+)= table: (V, C) of table_dtype (f32, f16 or bf16, as stored)[ids: (T,)];
// accumulate adds instead of writing. ids: int32 on the device, validated in [0, V) by the caller; a row
// whose id is outside [0, V) is skipped (out left as it was), never read out of bounds.
int embedding_forward_cuda(void *out, const int32_t *ids, const void *table, lf_dtype table_dtype, int V,
                           int T, int C, int accumulate, lf_dtype dtype, cudaStream_t stream);
// dtable: (V, C) f32 += dout: (T, C) of dtype rows scattered by ids: (T,) (repeated ids add up, atomically);
// rows whose id is outside [0, V) are skipped
int embedding_backward_cuda(float *dtable, const void *dout, const int32_t *ids, int V, int T, int C,
                            lf_dtype dtype, cudaStream_t stream);

// Residual connections and row gathers over packed tokens (csrc/ops/residual.h on the GPU).
#pragma once

#include "common.cuh"

// out = a + b, all (n,) of dtype; out may alias a or b
int residual_forward_cuda(void *out, const void *a, const void *b, int64_t n, lf_dtype dtype,
                          cudaStream_t stream);
// out: (B, C) = inp[index[b]], inp: (T, C); index: (B,) int32 on the device
int gather_rows_forward_cuda(void *out, const void *inp, const int32_t *index, int B, int C, lf_dtype dtype,
                             cudaStream_t stream);
// dinp[index[b]] += dout[b]; dinp: (T, C), dout: (B, C); rows of index must be distinct
int gather_rows_backward_cuda(void *dinp, const void *dout, const int32_t *index, int B, int C,
                              lf_dtype dtype, cudaStream_t stream);

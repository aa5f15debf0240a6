// Inverted dropout with a regenerated mask (csrc/ops/dropout.h on the GPU): element i is kept when
// lf_uniform(key, i) >= p, as on the CPU, and scaled by 1/(1-p). p <= 0 is the identity. key: fixed or
// read on the device (lf_cuda_key, common.cuh).
// All buffers are (n,) of dtype.
#pragma once

#include "common.cuh"

// out = in * mask / (1-p); out may equal in
int dropout_forward_cuda(void *out, const void *in, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                         cudaStream_t stream);
// din += dout * mask / (1-p)
int dropout_backward_cuda(void *din, const void *dout, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                          cudaStream_t stream);
// d = d * mask / (1-p) in place
int dropout_backward_inplace_cuda(void *d, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                                  cudaStream_t stream);

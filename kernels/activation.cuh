// Elementwise activations: GELU (erf form, HF "gelu") and tanh, each with its backward
// (csrc/ops/activation.h on the GPU). All buffers are (n,) of dtype.
#pragma once

#include "common.cuh"

// out = gelu(inp)
int gelu_forward_cuda(void *out, const void *inp, int64_t n, lf_dtype dtype, cudaStream_t stream);
// dinp += dout * gelu'(inp) (accumulate 0: =, dinp not read)
int gelu_backward_cuda(void *dinp, const void *inp, const void *dout, int64_t n, int accumulate,
                       lf_dtype dtype, cudaStream_t stream);
// out = tanh(inp); out may equal inp
int tanh_forward_cuda(void *out, const void *inp, int64_t n, lf_dtype dtype, cudaStream_t stream);
// dinp += dout * (1 - out^2), from the forward output
int tanh_backward_cuda(void *dinp, const void *out, const void *dout, int64_t n, lf_dtype dtype,
                       cudaStream_t stream);

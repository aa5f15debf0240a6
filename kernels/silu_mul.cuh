// SwiGLU gate of the Llama MLP: out = silu(gate) * up (csrc/ops/silu_mul.h on the GPU).
#pragma once

#include "common.cuh"

// out, gate, up: (N,) of dtype
int silu_mul_forward_cuda(void *out, const void *gate, const void *up, int64_t N, lf_dtype dtype,
                          cudaStream_t stream);
// dgate += dout * up * silu'(gate), dup += dout * silu(gate) (accumulate 0: =, dgate and dup not read);
// all (N,) of dtype
int silu_mul_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                           int64_t N, int accumulate, lf_dtype dtype, cudaStream_t stream);

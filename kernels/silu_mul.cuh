// SwiGLU gate of the Llama MLP: out = silu(gate) * up (csrc/ops/silu_mul.h on the GPU).
#pragma once

#include "common.cuh"

// out: (rows, cols) of dtype, packed; gate, up: (rows, cols) of dtype, rows ld apart (>= cols: ld = cols
// packed, or the column ranges of a fused gate|up product's rows)
int silu_mul_forward_cuda(void *out, const void *gate, const void *up, int64_t rows, int64_t cols, int64_t ld,
                          lf_dtype dtype, cudaStream_t stream);
// dgate += dout * up * silu'(gate), dup += dout * silu(gate) (accumulate 0: =, dgate and dup not read); dout:
// (rows, cols) packed; dgate, dup laid out as gate and up (rows ld apart); all of dtype
int silu_mul_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                           int64_t rows, int64_t cols, int64_t ld, int accumulate, lf_dtype dtype,
                           cudaStream_t stream);

// Rotary position embedding in transformers' rotate-half layout (csrc/ops/rope.h on the GPU): the pair
// (i, i + D/2) of each head is rotated by the angle pos * theta^(-2i/D).
#pragma once

#include "common.cuh"

// cos, sin: (T, D/2) f32 tables for the positions pos: (T,) int32 on the device; D the head size (even,
// at most 512)
int rope_tables_cuda(float *cos, float *sin, const int *pos, int T, int D, float theta, cudaStream_t stream);
// x: (T, H, D) of dtype rotated in place (forward); cos, sin: (T, D/2) f32
int rope_forward_cuda(void *x, const float *cos, const float *sin, int T, int H, int D, lf_dtype dtype,
                      cudaStream_t stream);
// dx: (T, H, D) of dtype rotated back in place (the transpose of the forward rotation)
int rope_backward_cuda(void *dx, const float *cos, const float *sin, int T, int H, int D, lf_dtype dtype,
                       cudaStream_t stream);
// q: (T, NH, D) and k: (T, NKV, D) of dtype rotated in place in one launch, as rope_forward_cuda on each; q's
// rows ldq elements apart (>= NH*D), k's ldk (>= NKV*D): packed, or column ranges of a fused q|k|v product's
// rows; q and k do not overlap
int rope_qk_forward_cuda(void *q, void *k, int64_t ldq, int64_t ldk, const float *cos, const float *sin,
                         int T, int NH, int NKV, int D, lf_dtype dtype, cudaStream_t stream);
// dq: (T, NH, D) and dk: (T, NKV, D) rotated back in place in one launch, as rope_backward_cuda on each; rows
// as in rope_qk_forward_cuda
int rope_qk_backward_cuda(void *dq, void *dk, int64_t ldq, int64_t ldk, const float *cos, const float *sin,
                          int T, int NH, int NKV, int D, lf_dtype dtype, cudaStream_t stream);

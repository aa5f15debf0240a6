// RMSNorm (Llama, Mistral): out = weight * x / sqrt(mean(x^2) + eps) per row (csrc/ops/rmsnorm.h on the GPU).
#pragma once

#include "common.cuh"

// out, inp: (N, C) of dtype; weight: (C,) f32; rstd: (N,) f32 saved for backward, or NULL
int rmsnorm_forward_cuda(void *out, float *rstd, const void *inp, const float *weight, int N, int C,
                         float eps, lf_dtype dtype, cudaStream_t stream);
// The residual connection and the RMSNorm that reads it, in one launch: sum = branch + residual, then
// out = RMSNorm(sum), what residual_forward_cuda then rmsnorm_forward_cuda compute (the sum rounded to
// dtype before it is normalized). sum, out, branch, residual: (N, C) of dtype; sum may alias branch or
// residual, out aliases none of them; weight: (C,) f32; rstd: (N,) f32 saved for backward, or NULL.
// Its backward is rmsnorm_backward_cuda with dinp the gradient of sum holding what sum's other readers
// gave it: that sum is then the gradient of branch and of residual too.
int residual_rmsnorm_forward_cuda(void *sum, void *out, float *rstd, const void *branch, const void *residual,
                                  const float *weight, int N, int C, float eps, lf_dtype dtype,
                                  cudaStream_t stream);
// dinp: (N, C) of dtype += or NULL; dweight: (C,) f32 += or NULL (frozen); dout, inp: (N, C) of dtype;
// weight: (C,) f32; rstd: (N,) f32 from the forward
int rmsnorm_backward_cuda(void *dinp, float *dweight, const void *dout, const void *inp, const float *weight,
                          const float *rstd, int N, int C, lf_dtype dtype, cudaStream_t stream);

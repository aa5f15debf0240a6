// LayerNorm over the last dimension, as torch.nn.LayerNorm (csrc/ops/layernorm.h on the GPU).
#pragma once

#include "common.cuh"

// out: (T, C) of dtype; mean, rstd: (T,) f32 saved; inp: (T, C) of dtype; weight, bias: (C,) f32
int layernorm_forward_cuda(void *out, float *mean, float *rstd, const void *inp, const float *weight,
                           const float *bias, int T, int C, float eps, lf_dtype dtype, cudaStream_t stream);
// dinp: (T, C) of dtype +=; dweight, dbias: (C,) f32 += or NULL (frozen); dout, inp: (T, C) of dtype;
// weight: (C,) f32; mean, rstd: (T,) f32 from the forward
int layernorm_backward_cuda(void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                            const float *weight, const float *mean, const float *rstd, int T, int C,
                            lf_dtype dtype, cudaStream_t stream);

// The end of an encoder sublayer in one launch: sum = dropout(branch; p, key) + residual, out =
// LayerNorm(sum), as dropout_forward_cuda, residual_forward_cuda and layernorm_forward_cuda in turn (the same
// roundings to the dtype). out, sum, branch, residual: (T, C) of dtype; sum is written (backward reads it)
// and may alias branch or residual; mean, rstd: (T,) f32 saved; weight, bias: (C,) f32; p <= 0 keeps every
// element
int dropout_residual_layernorm_forward_cuda(void *out, float *mean, float *rstd, void *sum,
                                            const void *branch, const void *residual, const float *weight,
                                            const float *bias, int T, int C, float eps, float p,
                                            lf_cuda_key key, lf_dtype dtype, cudaStream_t stream);
// Its backward in one launch (two with dweight or dbias): d = LayerNorm's input gradient of dout,
// dresidual = d and dbranch = dropout_backward(d), both written (=, not +=: the gradients that reach the
// residual and the branch); dweight, dbias: (C,) f32 += or NULL (frozen). dresidual, dbranch, dout, sum:
// (T, C) of dtype, sum and mean, rstd from the forward; dresidual and dbranch distinct, either may alias dout
int dropout_residual_layernorm_backward_cuda(void *dresidual, void *dbranch, float *dweight, float *dbias,
                                             const void *dout, const void *sum, const float *weight,
                                             const float *mean, const float *rstd, int T, int C, float p,
                                             lf_cuda_key key, lf_dtype dtype, cudaStream_t stream);

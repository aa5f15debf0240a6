// LayerNorm over the last dimension, as torch.nn.LayerNorm (biased variance).
#pragma once

#include <stdint.h>

// out: (T, C), mean, rstd: (T,) saved, inp: (T, C), weight, bias: (C,)
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps);
// dinp: (T, C) +=; dweight, dbias: (C,) += or NULL (frozen)
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C);

// The end of an encoder sublayer in one pass over each row (the CPU twin of kernels/layernorm.cu's
// fused pair): sum = dropout(branch; p, key) + residual, out = LayerNorm(sum), the same values as
// dropout_forward, residual_forward and layernorm_forward in turn. out, sum, branch, residual: (T, C);
// sum is written (backward reads it) and may alias branch or residual; mean, rstd: (T,) saved;
// weight, bias: (C,); p <= 0 keeps every element
void dropout_residual_layernorm_forward(float *out, float *mean, float *rstd, float *sum, const float *branch,
                                        const float *residual, const float *weight, const float *bias, int T,
                                        int C, float eps, float p, uint64_t key);
// Its backward: d = LayerNorm's input gradient of dout, dresidual = d and dbranch = dropout_backward(d),
// both written (=, not +=); dweight, dbias: (C,) += or NULL (frozen). dresidual, dbranch, dout, sum:
// (T, C), sum and mean, rstd from the forward; dresidual and dbranch distinct, either may alias dout
void dropout_residual_layernorm_backward(float *dresidual, float *dbranch, float *dweight, float *dbias,
                                         const float *dout, const float *sum, const float *weight,
                                         const float *mean, const float *rstd, int T, int C, float p,
                                         uint64_t key);

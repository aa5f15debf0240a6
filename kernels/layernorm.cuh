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

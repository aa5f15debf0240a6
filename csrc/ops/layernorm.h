// LayerNorm over the last dimension, as torch.nn.LayerNorm (biased variance).
#pragma once

// out: (T, C), mean, rstd: (T,) saved, inp: (T, C), weight, bias: (C,)
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps);
// dinp: (T, C) +=; dweight, dbias: (C,) += or NULL (frozen)
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C);

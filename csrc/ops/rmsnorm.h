// RMSNorm (Llama, Mistral): out = weight * x / sqrt(mean(x^2) + eps), per row.
#pragma once

// out, inp: (N, C), weight: (C), rstd: (N) saved for backward
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
// dinp += d/dinp; dweight += d/dweight when not NULL. dout, inp: (N, C), rstd: (N)
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

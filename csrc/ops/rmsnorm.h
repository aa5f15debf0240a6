// RMSNorm (Llama, Mistral): out = weight * x / sqrt(mean(x^2) + eps), per row.
#pragma once

// out, inp: (N, C), weight: (C), rstd: (N) saved for backward
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
// The residual connection and the RMSNorm that reads it in one pass over each row (the CPU twin of
// residual_rmsnorm_forward_cuda): sum = branch + residual, out = RMSNorm(sum), the values of
// residual_forward then rmsnorm_forward. sum, out, branch, residual: (N, C); sum may alias branch or
// residual, out none of them; rstd: (N,) or NULL. Its backward is rmsnorm_backward into the gradient
// of sum, which is then the gradient of branch and of residual too.
void residual_rmsnorm_forward(float *sum, float *out, float *rstd, const float *branch, const float *residual,
                              const float *weight, int N, int C, float eps);
// dinp += d/dinp; dweight += d/dweight when not NULL. dout, inp: (N, C), rstd: (N)
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

// The LoRA branch of a linear layer, as peft computes it:
// out += scaling * (dropout(x) @ A^T) @ B^T, A: (r, C), B: (OC, r).
#pragma once

#include <stdint.h>

// out: (T, OC) +=; u: (T, r) saved for backward; xd: (T, C) scratch (dropout(x)) used when p > 0
void lora_forward(float *out, float *u, float *xd, const float *x, const float *A, const float *B, int T,
                  int C, int OC, int r, float scaling, float p, uint64_t key);
// dA: (r, C) +=, dB: (OC, r) +=, dx: (T, C) += (NULL: not needed);
// du: (T, r) and xd: (T, C) are scratch
void lora_backward(float *dx, float *dA, float *dB, float *du, float *xd, const float *dout, const float *x,
                   const float *u, const float *A, const float *B, int T, int C, int OC, int r, float scaling,
                   float p, uint64_t key);

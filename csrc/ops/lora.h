// The LoRA branch of a linear layer, as peft computes it:
// out += scaling * (dropout(x) @ A^T) @ B^T, A: (r, C), B: (OC, r).
#pragma once

#include <stdint.h>

#include <stddef.h>

// floats of what the forward saves for the backward: u = dropout(x) @ A^T: (T, r), then, when p > 0,
// the dropout mask of x: (T, C) as bits (drawn once per step, not again in backward)
size_t lora_saved_floats(int T, int C, int r, float p);

// out: (T, OC) +=; saved: lora_saved_floats(T, C, r, p) written; xd: (T, C) scratch (dropout(x))
void lora_forward(float *out, float *saved, float *xd, const float *x, const float *A, const float *B, int T,
                  int C, int OC, int r, float scaling, float p, uint64_t key);
// dA: (r, C) +=, dB: (OC, r) +=, dx: (T, C) += (NULL: not needed); saved: the forward's;
// du: (T, r) and xd: (T, C) are scratch
void lora_backward(float *dx, float *dA, float *dB, float *du, float *xd, const float *dout, const float *x,
                   const float *saved, const float *A, const float *B, int T, int C, int OC, int r,
                   float scaling, float p);

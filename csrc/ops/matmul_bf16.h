// Linear layers in bfloat16 on the CPU, on oneDNN's matmul primitive (AMX / AVX512-BF16): a frozen
// weight W: (OC, C) is converted to bf16 once and reordered once into the library's preferred
// layout for each product that reads it (x W^T forward, dy W backward); activations are f32 and
// converted to bf16 per product; products accumulate in f32 and write f32.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ops/weight.h"

typedef struct matmul_bf16_weight matmul_bf16_weight;

// *out = W: (OC, C) in any float dtype packed for both products; with_bias: forward adds an f32
// bias (OC,). LF_EINVAL / LF_ENOMEM naming `name` on failure.
int matmul_bf16_pack(matmul_bf16_weight **out, lf_weight w, int C, int OC, int with_bias, const char *name);
void matmul_bf16_free(matmul_bf16_weight *w);
// bytes of the packed copies
size_t matmul_bf16_bytes(const matmul_bf16_weight *w);

// bf16 elements of scratch a product of T rows needs: T * max(C, OC)
static inline size_t matmul_bf16_scratch_elems(int T, int C, int OC) {
    return (size_t)T * (size_t)(C > OC ? C : OC);
}

// out: (T, OC) = x: (T, C) @ W^T + bias: (OC,) (NULL when packed without); scratch: T * C bf16
int matmul_bf16_forward(float *out, const float *x, const matmul_bf16_weight *w, const float *bias, int T,
                        uint16_t *scratch);
// dx: (T, C) = dout: (T, OC) @ W (accumulate: dx += ); scratch: T * OC bf16
int matmul_bf16_backward(float *dx, const float *dout, const matmul_bf16_weight *w, int T, int accumulate,
                         uint16_t *scratch);

// dst[i] = src[i] rounded to bf16 (nearest even, NaN kept quiet), OpenMP-parallel
void matmul_bf16_round(uint16_t *dst, const float *src, size_t n);

// Whether this CPU computes bf16 products fast (AMX-BF16 with the kernel's tile permission, or
// AVX512-BF16): 1 or 0, and why in reason. Asks the kernel for the AMX tile permission once.
int matmul_bf16_cpu_support(char *reason, size_t size);
// oneDNN's version "3.2.0 (commit ...)" and the instruction set its kernels use here
void matmul_bf16_library(char *version, size_t size, char *isa, size_t isa_size);

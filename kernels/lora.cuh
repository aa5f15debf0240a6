// The LoRA branch of a linear layer (csrc/ops/lora.h on the GPU), as peft computes it:
// out += scaling * (dropout(x) @ A^T) @ B^T, A: (r, C), B: (OC, r) f32 master weights, x and out of
// dtype. The products are custom kernels with f32 accumulation (r is small); dropout(x) is applied on
// the fly with csrc/ops/dropout.c's mask (element t * C + c of stream key,
// an lf_cuda_key: fixed or read on the device), never stored.
#pragma once

#include "common.cuh"

// bytes of device scratch lora_backward_cuda needs: du (T, r) f32
size_t lora_scratch_bytes(int T, int r);

// out: (T, OC) += scaling * u @ B^T; u: (T, r) f32 = dropout(x) @ A^T, written (saved for backward);
// x: (T, C). Dropout with probability p (0: none) and stream key, as lora_forward.
int lora_forward_cuda(void *out, float *u, const void *x, const float *A, const float *B, int T, int C,
                      int OC, int r, float scaling, float p, lf_cuda_key key, lf_dtype dtype,
                      cudaStream_t stream);
// dB: (OC, r) += scaling * dout^T @ u; dA: (r, C) += du^T @ dropout(x); dx: (T, C) += dropout'(du @ A),
// with du = scaling * dout @ B, dout: (T, OC); dA, dB f32, dx and dout of dtype. dx, dA, dB may be NULL
// (not needed); scratch: lora_scratch_bytes(T, r) bytes (holds du).
int lora_backward_cuda(void *dx, float *dA, float *dB, void *scratch, const void *dout, const void *x,
                       const float *u, const float *A, const float *B, int T, int C, int OC, int r,
                       float scaling, float p, lf_cuda_key key, lf_dtype dtype, cudaStream_t stream);

// Linear layers over packed tokens with cuBLASLt (csrc/ops/matmul.h on the GPU): out = x W^T + b.
// x, W, bias and out are of the activation dtype (weights resident in bf16/f16 for 16-bit runs, f32
// for f32 runs); the products accumulate in f32 (CUBLAS_COMPUTE_32F; f32 operands on TF32 tensor
// cores after matmul_set_tf32(1)); weight and bias gradients are f32. workspace: matmul_workspace_bytes()
// bytes of device memory owned by the caller (NULL runs cuBLASLt without a workspace, which rules out some of
// its faster algorithms).
#pragma once

#include "common.cuh"

// bytes of the cuBLASLt workspace a launcher may use
size_t matmul_workspace_bytes(void);

// on: the products of f32 operands from now on in TF32 (CUBLAS_COMPUTE_32F_FAST_TF32: inputs rounded
// to 10 mantissa bits, f32 accumulation), process-wide as torch.backends.cuda.matmul.allow_tf32
// (HF's TrainingArguments(tf32=True)); off (the default): in full f32. 16-bit products are unchanged.
void matmul_set_tf32(int on);
int matmul_tf32(void);

// out: (T, OC) = x: (T, C) @ w: (OC, C)^T + bias: (OC,) or NULL; accumulate: out += instead
int matmul_forward_cuda(void *out, const void *x, const void *w, const void *bias, int T, int C, int OC,
                        int accumulate, void *workspace, lf_dtype dtype, cudaStream_t stream);
// dx: (T, C) += dout: (T, OC) @ w: (OC, C), of dtype (accumulate_dx 0: dx = instead, dx not read);
// dw: (OC, C) += dout^T @ x: (T, C), f32; db: (OC,) += sum_t dout, f32. Any of dx, dw, db may be NULL
// (not needed).
int matmul_backward_cuda(void *dx, float *dw, float *db, const void *dout, const void *x, const void *w,
                         int T, int C, int OC, int accumulate_dx, void *workspace, lf_dtype dtype,
                         cudaStream_t stream);
// out: (T, OC) += bias: (OC,) on every row, both of dtype (the forward's bias when the cuBLASLt
// epilogue cannot take it)
int matmul_bias_add_cuda(void *out, const void *bias, int T, int OC, lf_dtype dtype, cudaStream_t stream);

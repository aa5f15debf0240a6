// The LoRA branch of a linear layer (csrc/ops/lora.h on the GPU), as peft computes it:
// out += scaling * (dropout(x) @ A^T) @ B^T, A: (r, C), B: (OC, r) f32 master weights, x and out of
// dtype. The products are custom kernels with f32 accumulation (r is small); dropout(x) is applied on
// the fly with csrc/ops/dropout.c's mask (element t * C + c of stream key,
// an lf_cuda_key: fixed or read on the device), never stored.
//
// The branches of the linears that read the same x (q and v on the attention's input, gate and up) run as
// one group: one launch for the forward of all of them, two for the backward, each branch with its own
// dropout stream (peft's mask per module) and its own out, which may be a column range of a wider buffer
// (rows ld elements apart: the fused q|k|v product's).
#pragma once

#include "common.cuh"

enum { LORA_MAX_BRANCHES = 3 };

// one branch of a group over x: (T, C); r and scaling are the group's
typedef struct {
    const float *A, *B; // A: (r, C), B: (OC, r) f32
    float *u;           // (T, r) f32: forward writes it (saved for backward), backward reads it
    void *out;          // forward: out (+=); backward: dout (read); (T, OC) of dtype, rows ld apart
    int64_t ld;         // >= OC
    int OC;
    lf_cuda_key key; // its dropout stream
    float *dA, *dB;  // backward: += (either NULL: not needed); forward: not read
} lora_branch;

// bytes of device scratch lora_group_backward_cuda needs for n branches over x: (T, C): their du (T, r) f32,
// once per 256 columns of x where the backward runs in one launch (C <= 1024)
size_t lora_scratch_bytes(int T, int C, int r, int n);

// every branch k < n: out_k += scaling * u_k @ B_k^T, u_k = dropout_k(x) @ A_k^T written; x: (T, C); one
// launch. Dropout with probability p (0: none), stream key_k.
int lora_group_forward_cuda(const lora_branch *br, int n, const void *x, int T, int C, int r, float scaling,
                            float p, lf_dtype dtype, cudaStream_t stream);
// every branch k < n, with du_k = scaling * dout_k @ B_k: dB_k += scaling * dout_k^T @ u_k, dA_k += du_k^T @
// dropout_k(x); dx: (T, C) += sum_k dropout_k'(du_k @ A_k) (NULL: not needed). One launch for C <= 1024 (each
// block of 256 columns of x computes the du it needs), else two; scratch: lora_scratch_bytes(T, C, r, n)
// bytes.
int lora_group_backward_cuda(const lora_branch *br, int n, void *dx, void *scratch, const void *x, int T,
                             int C, int r, float scaling, float p, lf_dtype dtype, cudaStream_t stream);

// One branch (a group of one, out's rows OC apart): out: (T, OC) += scaling * u @ B^T; u: (T, r) f32 =
// dropout(x) @ A^T, written (saved for backward); x: (T, C).
int lora_forward_cuda(void *out, float *u, const void *x, const float *A, const float *B, int T, int C,
                      int OC, int r, float scaling, float p, lf_cuda_key key, lf_dtype dtype,
                      cudaStream_t stream);
// dB: (OC, r) += scaling * dout^T @ u; dA: (r, C) += du^T @ dropout(x); dx: (T, C) += dropout'(du @ A),
// with du = scaling * dout @ B, dout: (T, OC); dA, dB f32, dx and dout of dtype. dx, dA, dB may be NULL
// (not needed); scratch: lora_scratch_bytes(T, C, r, 1) bytes (holds du).
int lora_backward_cuda(void *dx, float *dA, float *dB, void *scratch, const void *dout, const void *x,
                       const float *u, const float *A, const float *B, int T, int C, int OC, int r,
                       float scaling, float p, lf_cuda_key key, lf_dtype dtype, cudaStream_t stream);

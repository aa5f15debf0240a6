// Linear layers: out = x W^T + b over packed tokens, with BLAS. W may be f32, f16 or bf16
// (converted MATMUL_BLOCK rows at a time into f32 scratch).
#pragma once

#include <stddef.h>

#include "ops/weight.h"

#define MATMUL_BLOCK 256

// floats of scratch that matmul_forward/backward need for a weight of (OC, C)
size_t matmul_scratch_floats(int C, int OC, lf_dtype dtype);

// out: (T, OC) = x: (T, C) @ w: (OC, C)^T + bias: (OC,) or NULL; accumulate: out += instead
void matmul_forward(float *out, const float *x, lf_weight w, const float *bias, int T, int C, int OC,
                    int accumulate, float *scratch);
// dx: (T, C) = dout @ w (accumulate: dx += ); dw: (OC, C) += dout^T @ x (f32 w only); db: (OC,) +=
// sum_t dout. Any of dx, dw, db may be NULL (not needed).
void matmul_backward(float *dx, float *dw, float *db, const float *dout, const float *x, lf_weight w, int T,
                     int C, int OC, int accumulate, float *scratch);

// Plain f32 GEMM wrappers, row-major: c: (M, N) = alpha * op(a) @ op(b) + beta * c
void sgemm_nt(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);
void sgemm_nn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);
void sgemm_tn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);

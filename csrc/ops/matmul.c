#include "ops/matmul.h"

#include <cblas.h>

void sgemm_nt(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sgemm_nn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta, c,
                      ldc);
}

void sgemm_tn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    scipy_cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

size_t matmul_scratch_floats(int C, int OC, int dtype) {
    if (dtype == LF_WEIGHT_F32) return 0;
    return (size_t)(OC < MATMUL_BLOCK ? OC : MATMUL_BLOCK) * (size_t)C;
}

// rows [r0, r0 + n) of w as f32: a pointer into w (f32) or into scratch (converted)
static const float *weight_rows(lf_weight w, int r0, int n, int C, float *scratch) {
    if (w.dtype == LF_WEIGHT_F32) return (const float *)w.data + (size_t)r0 * C;
#pragma omp parallel for
    for (int r = 0; r < n; r++)
        weight_to_f32(scratch + (size_t)r * C, w, (int64_t)(r0 + r) * C, C);
    return scratch;
}

static int block_rows(lf_weight w, int OC) { return w.dtype == LF_WEIGHT_F32 ? OC : MATMUL_BLOCK; }

void matmul_forward(float *out, const float *x, lf_weight w, const float *bias, int T, int C, int OC,
                    int accumulate, float *scratch) {
    int nb = block_rows(w, OC);
    for (int o = 0; o < OC; o += nb) {
        int n = OC - o < nb ? OC - o : nb;
        sgemm_nt(T, n, C, 1.0f, x, C, weight_rows(w, o, n, C, scratch), C, accumulate ? 1.0f : 0.0f, out + o,
                 OC);
    }
    if (bias == NULL) return;
#pragma omp parallel for
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++)
            out[(size_t)t * OC + o] += bias[o];
}

void matmul_backward(float *dx, float *dw, float *db, const float *dout, const float *x, lf_weight w, int T,
                     int C, int OC, float *scratch) {
    if (dx != NULL) {
        int nb = block_rows(w, OC);
        for (int o = 0; o < OC; o += nb) {
            int n = OC - o < nb ? OC - o : nb;
            sgemm_nn(T, C, n, 1.0f, dout + o, OC, weight_rows(w, o, n, C, scratch), C, 1.0f, dx, C);
        }
    }
    if (dw != NULL) sgemm_tn(OC, C, T, 1.0f, dout, OC, x, C, 1.0f, dw, C);
    if (db != NULL) {
#pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int t = 0; t < T; t++)
                s += dout[(size_t)t * OC + o];
            db[o] += s;
        }
    }
}

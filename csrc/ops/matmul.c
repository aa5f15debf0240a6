#include "ops/matmul.h"

#include <cblas.h>
#include <omp.h>
#include <stdatomic.h>

// OpenBLAS runs single-threaded inside lorafast: the products are split over the OpenMP
// threads here, so the two thread pools never spin against each other on the same cores.
static void blas_single_threaded(void) {
    static atomic_int done;
    if (atomic_load(&done)) return;
#pragma omp critical(lf_blas_init)
    if (!atomic_load(&done)) {
        scipy_openblas_set_num_threads(1);
        atomic_store(&done, 1);
    }
}

enum { GEMM_SPLIT_ALIGN = 16 };
#define GEMM_MIN_FLOPS 2e5 // smaller products run on one thread

// c: (M, N) = alpha * op(a) @ op(b) + beta * c, row-major; ta / tb: a is (K, M) / b is (N, K).
// The larger of M and N is cut into one block per OpenMP thread.
static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0) return;
    blas_single_threaded();
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)M * N * K < GEMM_MIN_FLOPS) threads = 1;
    int split_m = M >= N, extent = split_m ? M : N;
    int chunk = (extent + threads - 1) / threads;
    chunk = (chunk + GEMM_SPLIT_ALIGN - 1) / GEMM_SPLIT_ALIGN * GEMM_SPLIT_ALIGN;
    int blocks = (extent + chunk - 1) / chunk;
    if (blocks == 1) {
        scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                          K, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#pragma omp parallel for num_threads(blocks) schedule(static, 1)
    for (int i = 0; i < blocks; i++) {
        int o = i * chunk, n = extent - o < chunk ? extent - o : chunk;
        const float *ai = a, *bi = b;
        float *ci = c;
        if (split_m) { // rows o.. of c: rows of op(a)
            ai = ta ? a + o : a + (size_t)o * lda;
            ci = c + (size_t)o * ldc;
        } else { // columns o.. of c: columns of op(b)
            bi = tb ? b + (size_t)o * ldb : b + o;
            ci = c + o;
        }
        scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                          split_m ? n : M, split_m ? N : n, K, alpha, ai, lda, bi, ldb, beta, ci, ldc);
    }
}

void sgemm_nt(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    sgemm(0, 1, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sgemm_nn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    sgemm(0, 0, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sgemm_tn(int M, int N, int K, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    sgemm(1, 0, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

size_t matmul_scratch_floats(int C, int OC, lf_dtype dtype) {
    if (dtype == LF_F32) return 0;
    return (size_t)(OC < MATMUL_BLOCK ? OC : MATMUL_BLOCK) * (size_t)C;
}

// rows [r0, r0 + n) of w as f32: a pointer into w (f32) or into scratch (converted)
static const float *weight_rows(lf_weight w, int r0, int n, int C, float *scratch) {
    if (w.dtype == LF_F32) return (const float *)w.data + (size_t)r0 * C;
#pragma omp parallel for
    for (int r = 0; r < n; r++)
        weight_to_f32(scratch + (size_t)r * C, w, (int64_t)(r0 + r) * C, C);
    return scratch;
}

static int block_rows(lf_weight w, int OC) { return w.dtype == LF_F32 ? OC : MATMUL_BLOCK; }

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
                     int C, int OC, int accumulate, float *scratch) {
    if (dx != NULL) {
        int nb = block_rows(w, OC);
        for (int o = 0; o < OC; o += nb) {
            int n = OC - o < nb ? OC - o : nb;
            float beta = o > 0 || accumulate ? 1.0f : 0.0f;
            sgemm_nn(T, C, n, 1.0f, dout + o, OC, weight_rows(w, o, n, C, scratch), C, beta, dx, C);
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

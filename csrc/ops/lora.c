#include "ops/lora.h"

#include "ops/dropout.h"
#include "ops/matmul.h"

// dropout(x), or x itself when p == 0
static const float *lora_input(float *xd, const float *x, int64_t n, float p, uint64_t key) {
    if (p <= 0.0f) return x;
    dropout_forward(xd, x, n, p, key);
    return xd;
}

void lora_forward(float *out, float *u, float *xd, const float *x, const float *A, const float *B, int T,
                  int C, int OC, int r, float scaling, float p, uint64_t key) {
    const float *h = lora_input(xd, x, (int64_t)T * C, p, key);
    sgemm_nt(T, r, C, 1.0f, h, C, A, C, 0.0f, u, r);
    sgemm_nt(T, OC, r, scaling, u, r, B, r, 1.0f, out, OC);
}

void lora_backward(float *dx, float *dA, float *dB, float *du, float *xd, const float *dout, const float *x,
                   const float *u, const float *A, const float *B, int T, int C, int OC, int r, float scaling,
                   float p, uint64_t key) {
    if (dB != NULL) sgemm_tn(OC, r, T, scaling, dout, OC, u, r, 1.0f, dB, r);
    sgemm_nn(T, r, OC, scaling, dout, OC, B, r, 0.0f, du, r);
    if (dA != NULL) sgemm_tn(r, C, T, 1.0f, du, r, lora_input(xd, x, (int64_t)T * C, p, key), C, 1.0f, dA, C);
    if (dx == NULL) return;
    if (p <= 0.0f) {
        sgemm_nn(T, C, r, 1.0f, du, r, A, C, 1.0f, dx, C);
        return;
    }
    sgemm_nn(T, C, r, 1.0f, du, r, A, C, 0.0f, xd, C);
    dropout_backward(dx, xd, (int64_t)T * C, p, key);
}

#include "ops/lora.h"

#include "ops/dropout.h"
#include "ops/matmul.h"

// u: (T, r) rounded up to whole 8-byte words: the mask's words follow, aligned
static size_t u_floats(int T, int r) { return ((size_t)T * (size_t)r + 1) / 2 * 2; }

size_t lora_saved_floats(int T, int C, int r, float p) {
    return u_floats(T, r) + (p > 0.0f ? 2 * (((size_t)T * (size_t)C + 63) / 64) : 0);
}

static uint64_t *saved_mask(float *saved, int T, int r) { return (uint64_t *)(saved + u_floats(T, r)); }

void lora_forward(float *out, float *saved, float *xd, const float *x, const float *A, const float *B, int T,
                  int C, int OC, int r, float scaling, float p, uint64_t key) {
    const float *h = x;
    if (p > 0.0f) {
        dropout_forward_bits(xd, saved_mask(saved, T, r), x, (int64_t)T * C, p, key);
        h = xd;
    }
    sgemm_nt(T, r, C, 1.0f, h, C, A, C, 0.0f, saved, r);
    sgemm_nt(T, OC, r, scaling, saved, r, B, r, 1.0f, out, OC);
}

void lora_backward(float *dx, float *dA, float *dB, float *du, float *xd, const float *dout, const float *x,
                   const float *saved, const float *A, const float *B, int T, int C, int OC, int r,
                   float scaling, float p) {
    const uint64_t *mask = saved_mask((float *)saved, T, r);
    int64_t n = (int64_t)T * C;
    if (dB != NULL) sgemm_tn(OC, r, T, scaling, dout, OC, saved, r, 1.0f, dB, r);
    sgemm_nn(T, r, OC, scaling, dout, OC, B, r, 0.0f, du, r);
    if (dA != NULL) {
        const float *h = x;
        if (p > 0.0f) {
            dropout_apply_bits(xd, x, mask, n, p, 0); // dropout(x) again, from the forward's mask
            h = xd;
        }
        sgemm_tn(r, C, T, 1.0f, du, r, h, C, 1.0f, dA, C);
    }
    if (dx == NULL) return;
    if (p <= 0.0f) {
        sgemm_nn(T, C, r, 1.0f, du, r, A, C, 1.0f, dx, C);
        return;
    }
    sgemm_nn(T, C, r, 1.0f, du, r, A, C, 0.0f, xd, C);
    dropout_apply_bits(dx, xd, mask, n, p, 1);
}

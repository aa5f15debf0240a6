#include "ops/layernorm.h"

#include <math.h>
#include <stddef.h>

#include "core/simd.h"
#include "ops/random.h"

// y: (C,) = (x - mean) * rstd * weight + bias over one row x: (C,); the row's mean and rstd saved
LF_VECTOR_CLONES static void layernorm_row_forward(float *y, float *mean, float *rstd, const float *x,
                                                   const float *weight, const float *bias, int C, float eps) {
    double m = 0.0, v = 0.0; // double sums: their order barely matters, so they vectorize
#pragma omp simd reduction(+ : m)
    for (int i = 0; i < C; i++)
        m += x[i];
    m /= C;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < C; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= C;
    float s = (float)(1.0 / sqrt(v + eps));
    for (int i = 0; i < C; i++)
        y[i] = (float)(x[i] - m) * s * weight[i] + bias[i];
    *mean = (float)m;
    *rstd = s;
}

// dx: (C,) the input gradient of one row (accumulate: +=, else =) from dy, x: (C,) and the row's
// mean m and rstd s; dx may alias dy
LF_VECTOR_CLONES static void layernorm_row_backward(float *dx, const float *dy, const float *x,
                                                    const float *weight, float m, float s, int C,
                                                    int accumulate) {
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int i = 0; i < C; i++) {
        float dnorm = weight[i] * dy[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (x[i] - m) * s;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * s;
        float d = (weight[i] * dy[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
        dx[i] = accumulate ? dx[i] + d : d;
    }
}

// dweight, dbias: (C,) += or NULL, the parameters' gradients over all T rows
static void layernorm_params_backward(float *dweight, float *dbias, const float *dout, const float *inp,
                                      const float *mean, const float *rstd, int T, int C) {
    if (dweight == NULL && dbias == NULL) return;
#pragma omp parallel for
    for (int i = 0; i < C; i++) {
        float dw = 0.0f, db = 0.0f;
        for (int t = 0; t < T; t++) {
            float dy = dout[(size_t)t * C + i];
            dw += dy * (inp[(size_t)t * C + i] - mean[t]) * rstd[t];
            db += dy;
        }
        if (dweight != NULL) dweight[i] += dw;
        if (dbias != NULL) dbias[i] += db;
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps) {
#pragma omp parallel for
    for (int t = 0; t < T; t++)
        layernorm_row_forward(out + (size_t)t * C, mean + t, rstd + t, inp + (size_t)t * C, weight, bias, C,
                              eps);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        size_t row = (size_t)t * C;
        layernorm_row_backward(dinp + row, dout + row, inp + row, weight, mean[t], rstd[t], C, 1);
    }
    layernorm_params_backward(dweight, dbias, dout, inp, mean, rstd, T, C);
}

// ---- the encoder's sublayer end, fused: dropout of the branch, the residual add, LayerNorm ----

// elements first .. first + n - 1 of the flat (T, C) arrays: sum = dropout(branch) + residual,
// rounded as dropout_forward then residual_forward round (two float operations, no contraction)
LF_VECTOR_CLONES static void dropout_residual_run(float *sum, const float *branch, const float *residual,
                                                  int64_t first, int64_t n, float p, uint64_t key) {
    if (p <= 0.0f) {
        for (int64_t i = 0; i < n; i++)
            sum[i] = branch[i] + residual[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float kept = branch[i] * lf_dropout_scale(key, (uint64_t)(first + i), p);
        sum[i] = kept + residual[i];
    }
}

// d: (n,) = d * the dropout mask of elements first .. first + n - 1, scaled
LF_VECTOR_CLONES static void dropout_mask_run(float *out, const float *d, int64_t first, int64_t n, float p,
                                              uint64_t key) {
    for (int64_t i = 0; i < n; i++)
        out[i] = d[i] * lf_dropout_scale(key, (uint64_t)(first + i), p);
}

void dropout_residual_layernorm_forward(float *out, float *mean, float *rstd, float *sum, const float *branch,
                                        const float *residual, const float *weight, const float *bias, int T,
                                        int C, float eps, float p, uint64_t key) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        size_t row = (size_t)t * C;
        dropout_residual_run(sum + row, branch + row, residual + row, (int64_t)row, C, p, key);
        layernorm_row_forward(out + row, mean + t, rstd + t, sum + row, weight, bias, C, eps);
    }
}

void dropout_residual_layernorm_backward(float *dresidual, float *dbranch, float *dweight, float *dbias,
                                         const float *dout, const float *sum, const float *weight,
                                         const float *mean, const float *rstd, int T, int C, float p,
                                         uint64_t key) {
    layernorm_params_backward(dweight, dbias, dout, sum, mean, rstd, T, C); // before dout may be overwritten
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        size_t row = (size_t)t * C;
        layernorm_row_backward(dresidual + row, dout + row, sum + row, weight, mean[t], rstd[t], C, 0);
        if (p > 0.0f)
            dropout_mask_run(dbranch + row, dresidual + row, (int64_t)row, C, p, key);
        else
            for (int i = 0; i < C; i++)
                dbranch[row + i] = dresidual[row + i];
    }
}

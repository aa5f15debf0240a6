#include "ops/layernorm.h"

#include <math.h>
#include <stddef.h>

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++)
            m += x[i];
        m /= C;
        for (int i = 0; i < C; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps));
        float *o = out + (size_t)t * C;
        for (int i = 0; i < C; i++)
            o[i] = (float)(x[i] - m) * s * weight[i] + bias[i];
        mean[t] = (float)m;
        rstd[t] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *dy = dout + (size_t)t * C, *x = inp + (size_t)t * C;
        float m = mean[t], s = rstd[t], dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float dnorm = weight[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * (x[i] - m) * s;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float *dx = dinp + (size_t)t * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            dx[i] += (weight[i] * dy[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
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

// RMSNorm forward and backward, computed in f32 as transformers' LlamaRMSNorm does.
#include "ops/rmsnorm.h"

#include <math.h>
#include <stddef.h>

// y: (C,) = weight * x / sqrt(mean(x^2) + eps) of one row x: (C,); its rstd saved when not NULL
static void rmsnorm_row_forward(float *y, float *rstd, const float *x, const float *weight, int C,
                                float eps) {
    double ss = 0.0;
    for (int c = 0; c < C; c++)
        ss += (double)x[c] * x[c];
    float r = 1.0f / sqrtf((float)(ss / C) + eps);
    for (int c = 0; c < C; c++)
        y[c] = weight[c] * (x[c] * r);
    if (rstd != NULL) *rstd = r;
}

// out, inp: (N, C), weight: (C), rstd: (N)
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                     float eps) {
#pragma omp parallel for
    for (int n = 0; n < N; n++)
        rmsnorm_row_forward(out + (long)n * C, rstd != NULL ? rstd + n : NULL, inp + (long)n * C, weight, C,
                            eps);
}

void residual_rmsnorm_forward(float *sum, float *out, float *rstd, const float *branch, const float *residual,
                              const float *weight, int N, int C, float eps) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        long row = (long)n * C;
        for (int c = 0; c < C; c++)
            sum[row + c] = branch[row + c] + residual[row + c];
        rmsnorm_row_forward(out + row, rstd != NULL ? rstd + n : NULL, sum + row, weight, C, eps);
    }
}

// dinp += rstd * (g - xhat * mean(g * xhat)) with g = dout * weight, xhat = x * rstd
static void rmsnorm_backward_inputs(float *dinp, const float *dout, const float *inp, const float *weight,
                                    const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C, *dy = dout + (long)n * C;
        float *dx = dinp + (long)n * C;
        float r = rstd[n];
        double dot = 0.0;
        for (int c = 0; c < C; c++)
            dot += (double)dy[c] * weight[c] * x[c] * r;
        float mean = (float)(dot / C);
        for (int c = 0; c < C; c++)
            dx[c] += r * (dy[c] * weight[c] - x[c] * r * mean);
    }
}

// dweight[c] += sum_n dout[n, c] * xhat[n, c]
static void rmsnorm_backward_weight(float *dweight, const float *dout, const float *inp, const float *rstd,
                                    int N, int C) {
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++)
            acc += (double)dout[(long)n * C + c] * inp[(long)n * C + c] * rstd[n];
        dweight[c] += (float)acc;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C) {
    if (dinp != NULL) rmsnorm_backward_inputs(dinp, dout, inp, weight, rstd, N, C);
    if (dweight != NULL) rmsnorm_backward_weight(dweight, dout, inp, rstd, N, C);
}

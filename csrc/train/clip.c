#include "train/clip.h"

#include <math.h>

double grad_global_norm(float *const *grads, const int64_t *sizes, int n) {
    double total = 0.0;
    for (int t = 0; t < n; t++) {
        double sum = 0.0;
        for (int64_t i = 0; i < sizes[t]; i++)
            sum += (double)grads[t][i] * grads[t][i];
        total += sum;
    }
    return sqrt(total);
}

void grad_clip(float *const *grads, const int64_t *sizes, int n, double norm, double max_norm) {
    float coef = (float)max_norm / ((float)norm + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    for (int t = 0; t < n; t++)
        for (int64_t i = 0; i < sizes[t]; i++)
            grads[t][i] *= coef;
}

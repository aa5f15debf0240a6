#include "ops/random.h"

#include <math.h>

void random_uniform_fill(float *x, int64_t n, float lo, float hi, uint64_t key) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * lf_uniform(key, (uint64_t)i);
}

void random_normal_fill(float *x, int64_t n, float mean, float std, uint64_t key) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        double u1 = ((double)lf_uniform(key, 2 * (uint64_t)i) + 0x1p-25),
               u2 = lf_uniform(key, 2 * (uint64_t)i + 1);
        x[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

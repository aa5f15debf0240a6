#include "ops/random.h"

#include <math.h>

#include "core/convert.h"

void random_uniform_fill(float *x, int64_t n, float lo, float hi, uint64_t key) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * lf_uniform(key, (uint64_t)i);
}

// value i of the normal(mean, std) stream key (Box-Muller)
static float normal_at(uint64_t key, int64_t i, float mean, float std) {
    double u1 = ((double)lf_uniform(key, 2 * (uint64_t)i) + 0x1p-25),
           u2 = lf_uniform(key, 2 * (uint64_t)i + 1);
    return mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void random_normal_fill(float *x, int64_t n, float mean, float std, uint64_t key) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] = normal_at(key, i, mean, std);
}

void random_normal_fill_dtype(void *x, lf_dtype dtype, int64_t n, float mean, float std, uint64_t key) {
    if (dtype == LF_F32) {
        random_normal_fill(x, n, mean, std, key);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += 4096) {
        float chunk[4096];
        int64_t m = n - c0 < 4096 ? n - c0 : 4096;
        for (int64_t i = 0; i < m; i++)
            chunk[i] = normal_at(key, c0 + i, mean, std);
        lf_convert_from_f32(chunk, dtype, (uint16_t *)x + c0, (size_t)m);
    }
}

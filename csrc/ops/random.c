#include "ops/random.h"

#include <math.h>

#include "core/convert.h"

void random_uniform_fill(float *x, int64_t n, float lo, float hi, uint64_t key) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * lf_uniform(key, (uint64_t)i);
}

// values 2k and 2k + 1 of the normal(mean, std) stream key: the two of one Box-Muller pair
static void normal_pair(uint64_t key, int64_t k, float mean, float std, float *a, float *b) {
    float u1 = lf_uniform(key, 2 * (uint64_t)k) + 0x1p-25f, u2 = lf_uniform(key, 2 * (uint64_t)k + 1);
    float r = std * sqrtf(-2.0f * logf(u1)), t = 6.28318530717958647f * u2;
    *a = mean + r * cosf(t);
    *b = mean + r * sinf(t);
}

// x: (n,) = values first .. first + n - 1 of the stream
static void normal_run(float *x, int64_t first, int64_t n, uint64_t key, float mean, float std) {
    float pair[2];
    int64_t i = 0;
    if (n > 0 && (first & 1)) { // starts on the second value of a pair
        normal_pair(key, first / 2, mean, std, &pair[0], &pair[1]);
        x[i++] = pair[1];
    }
    for (; i + 1 < n; i += 2)
        normal_pair(key, (first + i) / 2, mean, std, &x[i], &x[i + 1]);
    if (i < n) {
        normal_pair(key, (first + i) / 2, mean, std, &pair[0], &pair[1]);
        x[i] = pair[0];
    }
}

enum { NORMAL_CHUNK = 4096 };

void random_normal_fill(float *x, int64_t n, float mean, float std, uint64_t key) {
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += NORMAL_CHUNK)
        normal_run(x + c0, c0, n - c0 < NORMAL_CHUNK ? n - c0 : NORMAL_CHUNK, key, mean, std);
}

void random_normal_fill_dtype(void *x, lf_dtype dtype, int64_t n, float mean, float std, uint64_t key) {
    if (dtype == LF_F32) {
        random_normal_fill(x, n, mean, std, key);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += NORMAL_CHUNK) {
        float chunk[NORMAL_CHUNK];
        int64_t m = n - c0 < NORMAL_CHUNK ? n - c0 : NORMAL_CHUNK;
        normal_run(chunk, c0, m, key, mean, std);
        lf_convert_from_f32(chunk, dtype, (uint16_t *)x + c0, (size_t)m);
    }
}

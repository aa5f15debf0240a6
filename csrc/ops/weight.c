#include "ops/weight.h"

#include <math.h>

void weight_to_f32(float *dst, lf_weight w, int64_t offset, int64_t n) {
    if (w.dtype == LF_WEIGHT_F32) {
        memcpy(dst, (const float *)w.data + offset, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *src = (const uint16_t *)w.data + offset;
    if (w.dtype == LF_WEIGHT_BF16) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = lf_bf16_to_f32(src[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = lf_f16_to_f32(src[i]);
    }
}

int weight_all_finite(lf_weight w, int64_t n, int64_t *bad_index) {
    int64_t first = n;
#pragma omp parallel for reduction(min : first)
    for (int64_t i = 0; i < n; i++) {
        float v;
        weight_to_f32(&v, w, i, 1);
        if (!isfinite(v) && i < first) first = i;
    }
    *bad_index = first;
    return first == n;
}

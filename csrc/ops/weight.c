#include "ops/weight.h"

#include <math.h>

void weight_to_f32(float *dst, lf_weight w, int64_t offset, int64_t n) {
    if (w.dtype == LF_F32) {
        memcpy(dst, (const float *)w.data + offset, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *src = (const uint16_t *)w.data + offset;
    if (w.dtype == LF_BF16) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = lf_bf16_to_f32(src[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = lf_f16_to_f32(src[i]);
    }
}

// 1 when the element's exponent bits are not all ones (not Inf / NaN)
static int finite_at(lf_weight w, int64_t i) {
    if (w.dtype == LF_F32) return isfinite(((const float *)w.data)[i]);
    uint16_t h = ((const uint16_t *)w.data)[i], e = w.dtype == LF_BF16 ? 0x7F80 : 0x7C00;
    return (h & e) != e;
}

int weight_all_finite(lf_weight w, int64_t n, int64_t *bad_index) {
    int64_t first = n;
#pragma omp parallel for reduction(min : first) schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (!finite_at(w, i) && i < first) first = i;
    *bad_index = first;
    return first == n;
}

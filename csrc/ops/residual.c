#include "ops/residual.h"

#include <stddef.h>
#include <string.h>

void residual_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void gather_rows_forward(float *out, const float *inp, const int32_t *index, int B, int C) {
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * C, inp + (size_t)index[b] * C, (size_t)C * sizeof(float));
}

void gather_rows_backward(float *dinp, const float *dout, const int32_t *index, int B, int C) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            dinp[(size_t)index[b] * C + c] += dout[(size_t)b * C + c];
}

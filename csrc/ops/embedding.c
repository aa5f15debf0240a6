#include "ops/embedding.h"

#include <stddef.h>

void embedding_forward(float *out, const int32_t *ids, lf_weight table, int T, int C, int accumulate) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * C;
        if (!accumulate) {
            weight_to_f32(o, table, (int64_t)ids[t] * C, C);
            continue;
        }
        float row[256];
        for (int c0 = 0; c0 < C; c0 += 256) {
            int n = C - c0 < 256 ? C - c0 : 256;
            weight_to_f32(row, table, (int64_t)ids[t] * C + c0, n);
            for (int c = 0; c < n; c++)
                o[c0 + c] += row[c];
        }
    }
}

void embedding_backward(float *dtable, const float *dout, const int32_t *ids, int T, int C) {
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            dtable[(size_t)ids[t] * C + c] += dout[(size_t)t * C + c];
}

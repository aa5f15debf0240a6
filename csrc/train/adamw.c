#include "train/adamw.h"

#include <math.h>

// torch's lerp(start, end, w): fma(w, end - start, start) for w < 0.5, else fma(w - 1, end - start, end)
static inline float lerp(float start, float end, float w) {
    return w < 0.5f ? fmaf(w, end - start, start) : fmaf(w - 1.0f, end - start, end);
}

void adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const lf_adamw_hparams *h,
                  int64_t step) {
    const float decay = (float)(1.0 - h->lr * h->weight_decay);
    const float w1 = (float)(1.0 - h->beta1);
    const float beta2 = (float)h->beta2, w2 = (float)(1.0 - h->beta2);
    const double bias1 = 1.0 - pow(h->beta1, (double)step);
    const float bias2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)step));
    const float neg_step_size = (float)(-(h->lr / bias1));
    const float eps = (float)h->eps;
    const int decays = h->weight_decay != 0.0;
    for (int64_t i = 0; i < n; i++) {
        float pi = decays ? p[i] * decay : p[i];
        float mi = lerp(m[i], g[i], w1);
        float vi = v[i] * beta2 + w2 * g[i] * g[i];
        float denom = sqrtf(vi) / bias2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + neg_step_size * mi / denom;
    }
}

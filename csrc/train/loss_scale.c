#include "train/loss_scale.h"

#include <math.h>

void loss_scale_update(double *scale, int64_t *growth_tracker, int found_inf) {
    float current = (float)*scale; // torch keeps the scale in a float32 tensor
    if (found_inf) {
        *scale = (double)(current * 0.5f);
        *growth_tracker = 0;
        return;
    }
    int64_t successful = *growth_tracker + 1;
    if (successful == LF_LOSS_SCALE_GROWTH_INTERVAL) {
        float grown = current * 2.0f;
        if (isfinite(grown)) *scale = (double)grown;
        *growth_tracker = 0;
    } else {
        *growth_tracker = successful;
    }
}

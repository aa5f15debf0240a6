// AdamW with torch.optim.AdamW's arithmetic (decoupled weight decay, bias correction, eps
// added after the square root), one parameter tensor at a time.
#pragma once

#include <stdint.h>

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} lf_adamw_hparams;

// p, g, m, v: (n,) parameter, gradient, first and second moments; step >= 1 counts this update
void adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const lf_adamw_hparams *h,
                  int64_t step);

// AdamW with torch.optim.AdamW's arithmetic (decoupled weight decay, bias correction, eps
// added after the square root), one parameter tensor at a time.
#pragma once

#include <stdint.h>

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} lf_adamw_hparams;

// One update of a training run's optimizer: the accumulated gradients multiplied by grad_scale
// (the mean over micro-batches, a loss scale undone), their global norm, clipping to
// max_grad_norm (<= 0: none), then AdamW with adam (lr scheduled; weight decay skipped for
// no-decay params) as update number step (>= 1). skip_nonfinite: an inf/NaN norm skips the
// update and leaves everything unchanged, as torch AMP's GradScaler.
typedef struct {
    lf_adamw_hparams adam;
    int64_t step;
    float grad_scale;
    double max_grad_norm;
    int skip_nonfinite;
} lf_update;

// p, g, m, v: (n,) parameter, gradient, first and second moments; step >= 1 counts this update
void adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const lf_adamw_hparams *h,
                  int64_t step);

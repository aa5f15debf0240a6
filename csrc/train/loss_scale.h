// Dynamic loss scaling for float16 training, as torch.amp.GradScaler with its defaults (the
// scaler of HF's Trainer with fp16=True): the loss is multiplied by the scale before backward,
// the gradients divided by it before clipping; an update whose gradients hold an inf or NaN is
// skipped (the params, the moments and the learning-rate schedule stay as they are).
#pragma once

#include <stdint.h>

static const double LF_LOSS_SCALE_INIT = 65536.0; // init_scale 2**16
enum { LF_LOSS_SCALE_GROWTH_INTERVAL = 2000 };    // growth_interval

// After an update, as torch's _amp_update_scale_: an inf/NaN gradient (found_inf) halves *scale
// and restarts *growth_tracker; else it counts one more good update, and GROWTH_INTERVAL of them in a
// row double *scale (kept when the doubled scale is not finite in float) and restart the count.
void loss_scale_update(double *scale, int64_t *growth_tracker, int found_inf);

// Learning-rate schedules as transformers.get_scheduler builds them (LambdaLR factors).
#pragma once

#include <stdint.h>

typedef enum {
    LF_SCHEDULE_LINEAR = 0,
    LF_SCHEDULE_COSINE = 1,
    LF_SCHEDULE_CONSTANT = 2, // ignores warmup, as transformers does
    LF_SCHEDULE_CONSTANT_WITH_WARMUP = 3,
} lf_schedule_kind;

// the factor of the base learning rate for the update after `step` completed updates
double lr_schedule_factor(int kind, int64_t step, int64_t warmup, int64_t total);

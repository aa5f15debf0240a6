#include "train/schedule.h"

#include <math.h>

static const double PI = 3.141592653589793; // Python's math.pi

static double warmup_factor(int64_t step, int64_t warmup) {
    return (double)step / (double)(warmup > 1 ? warmup : 1);
}

double lr_schedule_factor(int kind, int64_t step, int64_t warmup, int64_t total) {
    if (kind == LF_SCHEDULE_CONSTANT) return 1.0;
    if (step < warmup) return warmup_factor(step, warmup);
    int64_t decay_steps = total - warmup > 1 ? total - warmup : 1;
    if (kind == LF_SCHEDULE_LINEAR) {
        double f = (double)(total - step) / (double)decay_steps;
        return f > 0.0 ? f : 0.0;
    }
    if (kind == LF_SCHEDULE_COSINE) {
        double progress = (double)(step - warmup) / (double)decay_steps;
        double f = 0.5 * (1.0 + cos(PI * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    return 1.0;
}

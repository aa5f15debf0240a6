// Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <stdint.h>

// the L2 norm of all the gradients together; grads[i]: (sizes[i],)
double grad_global_norm(float *const *grads, const int64_t *sizes, int n);
// grads *= min(1, max_norm / (norm + 1e-6)), in float as torch computes it
void grad_clip(float *const *grads, const int64_t *sizes, int n, double norm, double max_norm);

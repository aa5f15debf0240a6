// Class-weighted cross-entropy (csrc/ops/crossentropy.h on the GPU), as
// torch.nn.CrossEntropyLoss(weight=w): the weighted mean sum_b w[y_b] * nll_b / sum_b w[y_b]
// (weights NULL: the plain mean). The head runs in f32, so logits and dlogits are f32; the sums are
// in double, as the CPU's.
#pragma once

#include "common.cuh"

// loss: one f32 on the device (written; NULL: not needed); logits: (B, V) f32, labels: (B,) int32 in
// [0, V), weights: (V,) f32 or NULL; dlogits: (B, V) = grad_scale * d loss / d logits (written), or
// NULL (grad_scale: a loss scale, 1 without one). A label outside [0, V) makes the loss and its row of
// dlogits NaN.
int crossentropy_forward_backward_cuda(float *loss, float *dlogits, const float *logits,
                                       const int32_t *labels, const float *weights, int B, int V,
                                       float grad_scale, cudaStream_t stream);

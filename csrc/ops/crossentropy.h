// Class-weighted cross-entropy, as torch.nn.CrossEntropyLoss(weight=w): the weighted mean
// sum_b w[y_b] * nll_b / sum_b w[y_b] (weights NULL: the plain mean).
#pragma once

#include <stdint.h>

// returns the loss; logits: (B, V), labels: (B,) in [0, V), weights: (V,) or NULL;
// dlogits: (B, V) = d loss / d logits, or NULL
float crossentropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels,
                                    const float *weights, int B, int V);

// A loss of the logits computed elsewhere (the Trainer's Python compute_loss): given logits
// (B, V), fills dlogits (B, V) = d loss / d logits and *loss. LF_OK, or an error code already
// recorded (LF_EINTR: a Python exception is pending).
typedef int (*lf_logits_loss_fn)(void *ctx, const float *logits, float *dlogits, float *loss);

// What the training loop needs from a model: its trainable parameters and three calls on a
// padded batch. A model (csrc/models via an adapter, or the test model bow_model.c) fills
// this table; the loop never looks inside the model.
#pragma once

#include <stdint.h>

#include "ops/crossentropy.h"
#include "train/adamw.h"

typedef struct {
    const char *name; // peft adapter key
    float *data, *grad;
    int64_t numel;
    int no_decay; // HF's no-weight-decay group (biases, LayerNorm weights)
} lf_trainable_param;

// Optional: the optimizer on the model's own device (a GPU), the params and their moments kept
// there during a run. m, v: the loop's (sum of the params' numel,) moments in param order.
typedef struct {
    // memory for batches of up to max_batch rows of up to max_len tokens; params and moments up
    int (*begin)(void *self, const float *m, const float *v, int max_batch, int max_len);
    int (*begin_update)(void *self, float loss_scale); // gradients zeroed; the losses scaled by loss_scale
    // clipping (max_grad_norm > 0) and AdamW with h (lr scheduled) as update number step, on the
    // accumulated gradients * grad_scale; norm: theirs before clipping. skip_nonfinite: an inf/NaN
    // norm skips the update (found_inf 1)
    int (*update)(void *self, const lf_adamw_hparams *h, int64_t step, float grad_scale, double max_grad_norm,
                  int skip_nonfinite, double *norm, int *found_inf);
    int (*sync)(void *self, float *m, float *v); // params into params[].data, moments into m, v
    void (*end)(void *self);                     // the run is over (after a sync)
} lf_trainable_device;

typedef struct {
    void *self;
    int num_labels, pad_token_id, vocab_size;
    int n_params;
    lf_trainable_param *params;
    // ids, mask: (B, L) padded batch; labels: (B,) or NULL. LF_EINVAL names a bad value.
    int (*load_batch)(void *self, const int64_t *ids, const int64_t *mask, const int64_t *labels, int B,
                      int L);
    // logits: (B, num_labels) of the loaded batch; loss: class-weighted cross-entropy as
    // torch.nn.CrossEntropyLoss(weight=class_weights) (weights (num_labels,) or NULL), or NULL
    int (*forward)(void *self, const float *class_weights, float *logits, float *loss);
    // the same, and the gradients of the loss accumulated (+=) into the params' grad buffers; with
    // loss_fn the loss is loss_fn(loss_ctx, ...) instead of the cross-entropy (class_weights unused)
    int (*forward_backward)(void *self, const float *class_weights, lf_logits_loss_fn loss_fn, void *loss_ctx,
                            float *logits, float *loss);
    // dropout on/off and the random stream of the next forward
    void (*set_mode)(void *self, int training, uint64_t step);
    // NULL: the loop runs AdamW on params[].data / grad; else on the device, through this table
    const lf_trainable_device *device;
} lf_trainable;

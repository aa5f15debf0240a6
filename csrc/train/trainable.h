// What the training loop needs from a model: its trainable parameters and three calls on a
// padded batch. A model (csrc/models via an adapter, or the test model bow_model.c) fills
// this table; the loop never looks inside the model.
#pragma once

#include <stdint.h>

typedef struct {
    const char *name; // peft adapter key
    float *data, *grad;
    int64_t numel;
    int no_decay; // HF's no-weight-decay group (biases, LayerNorm weights)
} lf_trainable_param;

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
    // the same, and the gradients of the loss accumulated (+=) into the params' grad buffers
    int (*forward_backward)(void *self, const float *class_weights, float *logits, float *loss);
    // dropout on/off and the random stream of the next forward
    void (*set_mode)(void *self, int training, uint64_t step);
} lf_trainable;

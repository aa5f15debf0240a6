// A bag-of-words classifier that implements lf_trainable: logits = W mean(E[ids]) + b, with
// class-weighted cross-entropy. It exercises the training loop, checkpoints and the Trainer
// in the tests with a model whose reference (torch) fits in a few lines.
#pragma once

#include <stdint.h>

#include "train/trainable.h"

// a model with E: (vocab, dim) ~ N(0, 0.02) from seed, W: (num_labels, dim) likewise, b = 0
lf_trainable *bow_model_create(int vocab, int dim, int num_labels, int pad_token_id, uint64_t seed);
void bow_model_free(lf_trainable *t);

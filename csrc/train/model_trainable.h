// An lf_model (models/model.h) seen as an lf_trainable (train/trainable.h): the training loop
// and lf_predict drive the real encoder / decoder classifiers through this table.
#pragma once

#include "models/model.h"
#include "train/trainable.h"

// A table over m's trainable params (borrowed: m must outlive it and get no new params while
// it lives). NULL + lf_error on failure.
lf_trainable *model_trainable_create(lf_model *m);
void model_trainable_free(lf_trainable *t);

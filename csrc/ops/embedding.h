// Embedding lookups over packed tokens.
#pragma once

#include <stdint.h>

#include "ops/weight.h"

// out: (T, C) (+)= table: (V, C)[ids: (T,)]; accumulate adds instead of writing
void embedding_forward(float *out, const int32_t *ids, lf_weight table, int T, int C, int accumulate);
// dtable: (V, C) += dout rows scattered by ids (f32 tables only)
void embedding_backward(float *dtable, const float *dout, const int32_t *ids, int T, int C);

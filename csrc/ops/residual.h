// Residual connections and row gathers over packed tokens.
#pragma once

#include <stdint.h>

// out = a + b, all (n,); out may alias a or b
void residual_forward(float *out, const float *a, const float *b, int64_t n);
// out: (B, C) = inp[index[b]], inp: (T, C)
void gather_rows_forward(float *out, const float *inp, const int32_t *index, int B, int C);
// dinp[index[b]] += dout[b]; dinp: (T, C), dout: (B, C)
void gather_rows_backward(float *dinp, const float *dout, const int32_t *index, int B, int C);

// Elementwise activations: GELU (erf form, HF "gelu") and tanh, each with its backward.
#pragma once

#include <stdint.h>

// out, inp: (n,)
void gelu_forward(float *out, const float *inp, int64_t n);
// dinp = dout * gelu'(inp) (accumulate: dinp += ); dinp may be dout when not accumulating (in place)
void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n, int accumulate);
// out, inp: (n,); out may equal inp
void tanh_forward(float *out, const float *inp, int64_t n);
// dinp += dout * (1 - out^2), from the forward output
void tanh_backward(float *dinp, const float *out, const float *dout, int64_t n);

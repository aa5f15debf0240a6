// Inverted dropout with a regenerated mask: element i is kept when lf_uniform(key, i) >= p,
// and scaled by 1/(1-p). p == 0 is the identity.
#pragma once

#include <stdint.h>

// out, in: (n,); out may equal in
void dropout_forward(float *out, const float *in, int64_t n, float p, uint64_t key);
// din += dout * mask / (1-p); din, dout: (n,)
void dropout_backward(float *din, const float *dout, int64_t n, float p, uint64_t key);
// din = dout * mask / (1-p) in place on d: (n,)
void dropout_backward_inplace(float *d, int64_t n, float p, uint64_t key);

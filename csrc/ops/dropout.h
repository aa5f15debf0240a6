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

// The same mask drawn once and kept as bits (bit i % 64 of word i / 64: element i kept), for a
// layer that applies it again in backward: bits: (n + 63) / 64 words.
// out = dropout(in) with dropout_forward's mask and values bit for bit; out may equal in
void dropout_forward_bits(float *out, uint64_t *bits, const float *in, int64_t n, float p, uint64_t key);
// out = (accumulate: out +=) in * mask / (1-p) from the bits; out may equal in when not accumulating
void dropout_apply_bits(float *out, const float *in, const uint64_t *bits, int64_t n, float p,
                        int accumulate);

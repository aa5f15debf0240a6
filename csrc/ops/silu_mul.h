// SwiGLU gate of the Llama MLP: out = silu(gate) * up.
#pragma once

// out, gate, up: (N) elements
void silu_mul_forward(float *out, const float *gate, const float *up, long N);
// dgate += dout * up * silu'(gate), dup += dout * silu(gate); all (N)
void silu_mul_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                       long N);

// SwiGLU (silu(gate) * up) forward and backward.
#include "ops/silu_mul.h"

#include <math.h>

// out, gate, up: (N)
void silu_mul_forward(float *out, const float *gate, const float *up, long N) {
#pragma omp parallel for
    for (long i = 0; i < N; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// dgate, dup, dout, gate, up: (N); silu'(g) = s * (1 + g * (1 - s)), s = sigmoid(g)
void silu_mul_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                       long N) {
#pragma omp parallel for
    for (long i = 0; i < N; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g));
        dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] += dout[i] * g * s;
    }
}

// RoPE forward and backward; the angles follow LlamaRotaryEmbedding in f32.
#include "ops/rope.h"

#include <math.h>

// cos, sin: (T, D/2), pos: (T)
void rope_tables(float *cos, float *sin, const int *pos, int T, int D, float theta) {
    int half = D / 2;
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D);
            float angle = (float)pos[t] * inv_freq;
            cos[(long)t * half + i] = cosf(angle);
            sin[(long)t * half + i] = sinf(angle);
        }
    }
}

// x: (T, H, D) in place; direction +1 rotates by the angle (forward), -1 by its negative
static void rope_rotate(float *x, const float *cos, const float *sin, int T, int H, int D, float direction) {
    int half = D / 2;
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *c = cos + (long)t * half, *s = sin + (long)t * half;
        for (int h = 0; h < H; h++) {
            float *v = x + ((long)t * H + h) * D;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = direction * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward(float *x, const float *cos, const float *sin, int T, int H, int D) {
    rope_rotate(x, cos, sin, T, H, D, 1.0f);
}

void rope_backward(float *dx, const float *cos, const float *sin, int T, int H, int D) {
    rope_rotate(dx, cos, sin, T, H, D, -1.0f);
}

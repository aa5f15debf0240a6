// Rotary position embedding in transformers' rotate-half layout: the pair (i, i + D/2) of
// each head is rotated by the angle pos * theta^(-2i/D).
#pragma once

// cos, sin: (T, D/2) tables for the positions pos: (T); D the head size (even)
void rope_tables(float *cos, float *sin, const int *pos, int T, int D, float theta);
// x: (T, H, D) rotated in place (forward)
void rope_forward(float *x, const float *cos, const float *sin, int T, int H, int D);
// dx: (T, H, D) rotated back in place (the transpose of the forward rotation)
void rope_backward(float *dx, const float *cos, const float *sin, int T, int H, int D);

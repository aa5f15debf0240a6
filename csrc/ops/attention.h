// Scaled dot-product attention over packed variable-length sequences (sequence b holds tokens
// offsets[b] .. offsets[b+1]-1; padding is implied by the packing), with grouped-query heads
// (NH query heads share NKV key/value heads), an optional causal mask and sliding window,
// and dropout on the probabilities. Probabilities are not stored: backward recomputes them
// from the saved log-sum-exp.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, NH, NKV, HD; // sequences, query heads, key/value heads, head size
    int causal;         // 1: token i sees j <= i
    int window;         // > 0: token i sees j > i - window (Mistral's sliding window); 0: all
    float dropout;      // probability dropout (training)
    uint64_t key;       // dropout: probability (h, i, j) (i, j packed token indices) is kept when
                        // lf_uniform(lf_stream_key(key, h), i << 32 | j) >= dropout, whatever T is
} attention_shape;

// floats of scratch for attention_forward/backward: per thread, two blocks of (64, max_len)
// probabilities and their gradients (the scores are BLAS products, a block of queries at a time)
size_t attention_scratch_floats(int max_len, int nthreads);

// out: (T, NH*HD), lse: (T, NH) saved; q: (T, NH*HD), k, v: (T, NKV*HD), offsets: (B+1,)
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *offsets, attention_shape s, float *scratch);
// dq: (T, NH*HD), dk, dv: (T, NKV*HD) = (accumulate: += ); dout, out: (T, NH*HD), lse: (T, NH)
void attention_backward(float *dq, float *dk, float *dv, int accumulate, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const int32_t *offsets, attention_shape s, float *scratch);

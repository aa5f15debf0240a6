// Scaled dot-product attention over packed variable-length sequences (csrc/ops/attention.h on the
// GPU): grouped-query heads, causal mask, sliding window and probability dropout with the CPU's
// mask, flash-attention-2 style (tiles of queries and keys in shared memory, online softmax,
// f32 accumulation). Probabilities are not stored: backward recomputes them from the saved lse.
//
// s is the CPU op's attention_shape (B, NH, NKV, HD, causal, window, dropout), except s.key, which
// the launchers do not read: the dropout stream comes as key (an lf_cuda_key: fixed, or read on the
// device from a step seed), and the mask of probability (h, i, j) is the CPU's for s.key equal to it
// (i, j packed token indices: appending a sequence leaves the others' masks as they were). Head sizes
// HD: 32, 64, 80, 96, 128; NH % NKV == 0; dropout < 1 (<= 0: none, key not read). offsets: (B+1,)
// int32 on the device with offsets[0] == 0 and offsets[B] == T, the packed tokens. max_len: the longest
// sequence (a smaller positive value is still correct, only slower). Other sizes return
// cudaErrorInvalidValue before any launch.
#pragma once

#include "common.cuh"

extern "C" {
#include "ops/attention.h"
}

// 1 for the head sizes the launchers are built for (32, 64, 80, 96, 128), else 0
int attention_head_size_supported(int HD);

// bytes of scratch for attention_backward_cuda: dq in f32 (T, NH*HD; zero on entry), and with grouped-query
// heads (NKV < NH) the f32 dk and dv partials of every query head, (NH/NKV, T, NKV*HD) each
size_t attention_scratch_bytes(int T, int NH, int NKV, int HD);

// out: (T, NH*HD) of dtype, lse: (T, NH) f32, both written; q: (T, NH*HD), k, v: (T, NKV*HD) of dtype,
// q's rows ldq elements apart (>= NH*HD), k's and v's ldkv (>= NKV*HD): column ranges of a fused q|k|v
// product's rows, or packed rows (ldq = NH*HD, ldkv = NKV*HD)
int attention_forward_cuda(void *out, float *lse, const void *q, const void *k, const void *v, int64_t ldq,
                           int64_t ldkv, const int32_t *offsets, int T, int max_len, attention_shape s,
                           lf_cuda_key key, lf_dtype dtype, cudaStream_t stream);
// dq: (T, NH*HD), dk, dv: (T, NKV*HD) of dtype += (accumulate 0: =, their values not read), rows as q's,
// k's and v's; dout, out: (T, NH*HD) of dtype, lse: (T, NH) f32; q, k, v, ldq, ldkv as in forward; scratch:
// attention_scratch_bytes(T, NH, NKV, HD) bytes of device memory whose first T*NH*HD floats (dq's f32 sums)
// are zero on entry, and are left zero (a step zeroes its scratch once, not once per layer: a node fewer per
// layer in its graph)
int attention_backward_cuda(void *dq, void *dk, void *dv, int accumulate, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v, int64_t ldq,
                            int64_t ldkv, const int32_t *offsets, int T, int max_len, attention_shape s,
                            lf_cuda_key key, void *scratch, lf_dtype dtype, cudaStream_t stream);

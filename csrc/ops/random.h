// Counter-based random numbers: value i of stream (seed, stream) is a pure function of its
// arguments, so dropout masks are regenerated in backward instead of stored, and fills are
// parallel and reproducible. The functions below are the CPU's and the GPU's alike: under nvcc
// they are __host__ __device__ (kernels/common.cuh includes this header), so a kernel draws the
// CPU's numbers and drops the CPU's elements bit for bit.
#pragma once

#include <stdint.h>

#include "core/dtype.h" // lf_dtype

#ifdef __CUDACC__
#define LF_HOST_DEVICE __host__ __device__
#else
#define LF_HOST_DEVICE
#endif

static inline LF_HOST_DEVICE uint64_t lf_mix64(uint64_t x) { // splitmix64 finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// A uniform float in [0, 1) with 24 random bits.
static inline LF_HOST_DEVICE float lf_uniform(uint64_t key, uint64_t i) {
    return (float)(lf_mix64(key ^ lf_mix64(i + 0x9e3779b97f4a7c15ULL)) >> 40) * (1.0f / 16777216.0f);
}

// The key of one random stream (e.g. one dropout site of one step).
static inline LF_HOST_DEVICE uint64_t lf_stream_key(uint64_t seed, uint64_t stream) {
    return lf_mix64(seed * 0x9e3779b97f4a7c15ULL + lf_mix64(stream + 1));
}

// The inverted-dropout factor of element i of stream key for dropout probability p: 1/(1-p) when
// the element is kept (lf_uniform(key, i) >= p), else 0.
static inline LF_HOST_DEVICE float lf_dropout_scale(uint64_t key, uint64_t i, float p) {
    return lf_uniform(key, i) >= p ? 1.0f / (1.0f - p) : 0.0f;
}

// x: (n,) filled with uniform values in [lo, hi)
void random_uniform_fill(float *x, int64_t n, float lo, float hi, uint64_t key);
// x: (n,) filled with normal(mean, std) values (Box-Muller)
void random_normal_fill(float *x, int64_t n, float mean, float std, uint64_t key);
// x: (n,) of dtype F32, F16 or BF16 filled with normal(mean, std) values rounded to dtype;
// the values equal random_normal_fill's for the same key (random weights of any size)
void random_normal_fill_dtype(void *x, lf_dtype dtype, int64_t n, float mean, float std, uint64_t key);

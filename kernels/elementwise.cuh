// Launch size of the elementwise kernels (activation, silu_mul, dropout): one thread per element in a
// grid-stride loop, so any n runs with a bounded grid. Where every pointer is 16-byte aligned, GELU and
// SiLU·mul read and write 16 bytes at once (8 bf16/f16 or 4 f32 elements: a pack), the elements past the
// last whole pack one by one.
#pragma once

#include <initializer_list>

#include "common.cuh"

enum { ELEMENTWISE_THREADS = 256, ELEMENTWISE_MAX_BLOCKS = 65536 };

// 16 bytes of T, loaded and stored at once
template <typename T> struct alignas(16) elementwise_pack {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

// the packs of n elements of T a kernel runs as 16-byte vectors: n / pack size when every pointer is
// 16-byte aligned, else 0 (all of them one by one)
template <typename T>
static inline int64_t elementwise_packs(int64_t n, std::initializer_list<const void *> ptrs) {
    for (const void *p : ptrs)
        if ((uintptr_t)p % 16 != 0) return 0;
    return n / elementwise_pack<T>::N;
}

// threads a kernel needs for n elements of T of which packs run as vectors: one per pack and per rest
template <typename T> static inline int64_t elementwise_threads(int64_t n, int64_t packs) {
    return packs + (n - packs * elementwise_pack<T>::N);
}

// blocks for n >= 1 elements
static inline unsigned elementwise_blocks(int64_t n) {
    int64_t blocks = (n + ELEMENTWISE_THREADS - 1) / ELEMENTWISE_THREADS;
    return (unsigned)(blocks < ELEMENTWISE_MAX_BLOCKS ? blocks : ELEMENTWISE_MAX_BLOCKS);
}

// the first element of this thread and the stride of the grid-stride loop
__device__ __forceinline__ int64_t elementwise_first(void) {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t elementwise_stride(void) { return (int64_t)gridDim.x * blockDim.x; }

// Launch size of the elementwise kernels (activation, silu_mul, dropout): one thread per element in a
// grid-stride loop, so any n runs with a bounded grid.
#pragma once

#include "common.cuh"

enum { ELEMENTWISE_THREADS = 256, ELEMENTWISE_MAX_BLOCKS = 65536 };

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

// Sums in double over a warp and a block, for reductions that mirror the CPU's double accumulators
// (cross-entropy's loss, the gradients' global norm).
#pragma once

#include <cuda_runtime.h>

__device__ __forceinline__ double warp_sum_double(double x) {
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// The sum of x over the block (blockDim.x a multiple of 32, at most 1024), returned to every
// thread, in a fixed order (the same result on every run). shared: 32 doubles of __shared__
// memory. Synchronizes the block.
__device__ __forceinline__ double block_sum_double(double x, double *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    x = warp_sum_double(x);
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0;
    return warp_sum_double(x);
}

// What every kernel family shares: element types, loads/stores in f32, warp and block
// reductions, launch sizes, dropout keys, and (included) the counter-based RNG of csrc/ops/random.h,
// whose functions are __host__ __device__: kernels call lf_uniform, lf_stream_key and lf_dropout_scale.
//
// Conventions (see DEVELOPERS.md, "CUDA kernels"):
// - kernels/<op>.cu holds one op family: its kernels and its launchers, forward and backward
//   side by side, mirroring csrc/ops/<op>.c; kernels/<op>.cuh declares the launchers.
// - A launcher is a plain function `int <op>_<forward|backward>_cuda(..., cudaStream_t stream)`
//   over device pointers and sizes (shapes in a one-line comment, as the CPU op). It returns 0,
//   or a cudaError_t code (e.g. cudaErrorInvalidValue for a size it cannot run), never aborts.
// - Activations are of element type lf_dtype (LF_F32, LF_BF16 or LF_F16), passed at run time;
//   kernels are templates over the element type and compute and accumulate in f32.
// - Dropout masks are the CPU's: element i of stream key is kept when lf_uniform(key, i) >= p,
//   so the GPU and the CPU drop the same elements and tests compare them exactly. A launcher takes
//   the key as an lf_cuda_key: fixed, or read on the device from a step seed (see below).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "core/dtype.h"
#include "ops/random.h"
}

// ---- element types: load as f32, store from f32 (round to nearest even) ----

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

// bytes of one element of dtype
static inline size_t lf_cuda_dtype_size(lf_dtype dtype) { return dtype == LF_F32 ? 4 : 2; }

// Calls f(T{}) with T the element type of dtype: a launcher's run-time dtype becomes a
// template argument. Returns f's result, or cudaErrorInvalidValue for an unknown dtype.
template <typename F> static inline int lf_dispatch_dtype(lf_dtype dtype, F f) {
    switch (dtype) {
    case LF_F32:
        return f(float{});
    case LF_BF16:
        return f(__nv_bfloat16{});
    case LF_F16:
        return f(__half{});
    default:
        return (int)cudaErrorInvalidValue;
    }
}

// ---- launches ----

static inline unsigned lf_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// 0, or the error of the last launch
static inline int lf_launch_status(void) { return (int)cudaGetLastError(); }

// ---- reductions ----

// the sum of x over the warp, every lane getting it (float, or double for the sums that mirror
// the CPU's double accumulators), in a fixed order
template <typename A> __device__ __forceinline__ A warp_sum(A x) {
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// The sum of x over the block (blockDim.x a multiple of 32, at most 1024), returned to every
// thread, in a fixed order (the same result on every run). shared: 32 values of __shared__
// memory. Synchronizes the block.
template <typename A> __device__ __forceinline__ A block_sum(A x, A *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : A(0);
    return warp_sum(x);
}

// ---- dropout keys (the RNG itself is csrc/ops/random.h's, __host__ __device__) ----

// A dropout stream key as launchers and kernels take it (by value). step_seed NULL: value is the key.
// Else the key is lf_stream_key(*step_seed, value), read on the device when a kernel runs, value the
// stream (a site): a launch captured in a CUDA graph then draws each replay's masks from the step seed
// written before it. With no dropout (p <= 0) step_seed is not read (it may be anything).
typedef struct {
    const uint64_t *step_seed; // device memory, one value; or NULL
    uint64_t value;
} lf_cuda_key;

// a fixed key (the host computed it)
static inline lf_cuda_key lf_cuda_fixed_key(uint64_t key) { return {NULL, key}; }

// the stream key of k for dropout probability p (0 when p <= 0: no mask is drawn, step_seed not read)
__device__ __forceinline__ uint64_t lf_cuda_key_value(lf_cuda_key k, float p) {
    if (!(p > 0.0f)) return 0;
    return k.step_seed != NULL ? lf_stream_key(*k.step_seed, k.value) : k.value;
}

// SwiGLU (silu(gate) * up) forward and backward: the CUDA twin of csrc/ops/silu_mul.c.
#include "elementwise.cuh"
#include "silu_mul.cuh"

// out, gate, up: (N,)
template <typename T> __global__ void silu_mul_forward_kernel(T *out, const T *gate, const T *up, int64_t N) {
    for (int64_t i = elementwise_first(); i < N; i += elementwise_stride()) {
        float g = to_f32(gate[i]);
        out[i] = from_f32<T>(g / (1.0f + expf(-g)) * to_f32(up[i]));
    }
}

// dgate, dup, dout, gate, up: (N,); silu'(g) = s * (1 + g * (1 - s)), s = sigmoid(g); dgate and dup
// written, added to with accumulate
template <typename T>
__global__ void silu_mul_backward_kernel(T *dgate, T *dup, const T *dout, const T *gate, const T *up,
                                         int64_t N, int accumulate) {
    for (int64_t i = elementwise_first(); i < N; i += elementwise_stride()) {
        float g = to_f32(gate[i]), u = to_f32(up[i]), dy = to_f32(dout[i]), s = 1.0f / (1.0f + expf(-g));
        float dg = dy * u * s * (1.0f + g * (1.0f - s)), du = dy * g * s;
        dgate[i] = from_f32<T>(accumulate ? to_f32(dgate[i]) + dg : dg);
        dup[i] = from_f32<T>(accumulate ? to_f32(dup[i]) + du : du);
    }
}

int silu_mul_forward_cuda(void *out, const void *gate, const void *up, int64_t N, lf_dtype dtype,
                          cudaStream_t stream) {
    if (N < 0) return (int)cudaErrorInvalidValue;
    if (N == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        silu_mul_forward_kernel<T><<<elementwise_blocks(N), ELEMENTWISE_THREADS, 0, stream>>>(
            (T *)out, (const T *)gate, (const T *)up, N);
        return lf_launch_status();
    });
}

int silu_mul_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                           int64_t N, int accumulate, lf_dtype dtype, cudaStream_t stream) {
    if (N < 0) return (int)cudaErrorInvalidValue;
    if (N == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        silu_mul_backward_kernel<T><<<elementwise_blocks(N), ELEMENTWISE_THREADS, 0, stream>>>(
            (T *)dgate, (T *)dup, (const T *)dout, (const T *)gate, (const T *)up, N, accumulate);
        return lf_launch_status();
    });
}

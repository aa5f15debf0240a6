// SwiGLU (silu(gate) * up) forward and backward: the CUDA twin of csrc/ops/silu_mul.c.
#include "elementwise.cuh"
#include "silu_mul.cuh"

__device__ __forceinline__ float sigmoid_of(float g) { return 1.0f / (1.0f + expf(-g)); }
__device__ __forceinline__ float silu_mul_of(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// out, gate, up: (N,); the first `packs` packs as 16-byte vectors (elementwise_packs)
template <typename T>
__global__ void silu_mul_forward_kernel(T *out, const T *gate, const T *up, int64_t N, int64_t packs) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        P g = ((const P *)gate)[p], u = ((const P *)up)[p], o;
        for (int j = 0; j < P::N; j++)
            o.v[j] = from_f32<T>(silu_mul_of(to_f32(g.v[j]), to_f32(u.v[j])));
        ((P *)out)[p] = o;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < N; i += elementwise_stride())
        out[i] = from_f32<T>(silu_mul_of(to_f32(gate[i]), to_f32(up[i])));
}

// element i of the backward: dgate, dup (+)= dy * u * silu'(g), dy * silu(g), with silu'(g) = s * (1 + g * (1
// - s)), s = sigmoid(g)
template <typename T>
__device__ __forceinline__ void silu_mul_grad(T *dgate, T *dup, float dy, float g, float u, int accumulate) {
    float s = sigmoid_of(g), dg = dy * u * s * (1.0f + g * (1.0f - s)), du = dy * g * s;
    *dgate = from_f32<T>(accumulate ? to_f32(*dgate) + dg : dg);
    *dup = from_f32<T>(accumulate ? to_f32(*dup) + du : du);
}

// dgate, dup, dout, gate, up: (N,); dgate and dup written, added to with accumulate; packs as forward's
template <typename T>
__global__ void silu_mul_backward_kernel(T *dgate, T *dup, const T *dout, const T *gate, const T *up,
                                         int64_t N, int64_t packs, int accumulate) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        P dy = ((const P *)dout)[p], g = ((const P *)gate)[p], u = ((const P *)up)[p], dg, du;
        if (accumulate) dg = ((const P *)dgate)[p], du = ((const P *)dup)[p];
        for (int j = 0; j < P::N; j++)
            silu_mul_grad(&dg.v[j], &du.v[j], to_f32(dy.v[j]), to_f32(g.v[j]), to_f32(u.v[j]), accumulate);
        ((P *)dgate)[p] = dg, ((P *)dup)[p] = du;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < N; i += elementwise_stride())
        silu_mul_grad(&dgate[i], &dup[i], to_f32(dout[i]), to_f32(gate[i]), to_f32(up[i]), accumulate);
}

int silu_mul_forward_cuda(void *out, const void *gate, const void *up, int64_t N, lf_dtype dtype,
                          cudaStream_t stream) {
    if (N < 0) return (int)cudaErrorInvalidValue;
    if (N == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = elementwise_packs<T>(N, {out, gate, up});
        silu_mul_forward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(N, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)out, (const T *)gate, (const T *)up, N, packs);
        return lf_launch_status();
    });
}

int silu_mul_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                           int64_t N, int accumulate, lf_dtype dtype, cudaStream_t stream) {
    if (N < 0) return (int)cudaErrorInvalidValue;
    if (N == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = elementwise_packs<T>(N, {dgate, dup, dout, gate, up});
        silu_mul_backward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(N, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)dgate, (T *)dup, (const T *)dout, (const T *)gate, (const T *)up, N, packs, accumulate);
        return lf_launch_status();
    });
}

// GELU and tanh forward and backward: the CUDA twin of csrc/ops/activation.c. The CPU evaluates erf and
// exp with polynomials (no libm call in its vector loops); here they are CUDA's erff and expf.
#include "activation.cuh"
#include "elementwise.cuh"

#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

__device__ __forceinline__ float gelu_of(float x) { return 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT2)); }

// d gelu(x) / dx = cdf(x) + x * pdf(x)
__device__ __forceinline__ float gelu_slope(float x) {
    float cdf = 0.5f * (1.0f + erff(x * GELU_INV_SQRT2)), pdf = GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// out, inp: (n,); the first `packs` packs as 16-byte vectors (elementwise_packs)
template <typename T> __global__ void gelu_forward_kernel(T *out, const T *inp, int64_t n, int64_t packs) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        P x = ((const P *)inp)[p], y;
        for (int j = 0; j < P::N; j++)
            y.v[j] = from_f32<T>(gelu_of(to_f32(x.v[j])));
        ((P *)out)[p] = y;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < n; i += elementwise_stride())
        out[i] = from_f32<T>(gelu_of(to_f32(inp[i])));
}

// dinp, inp, dout: (n,); dinp = dout * gelu'(x), += with accumulate; packs as in the forward
template <typename T>
__global__ void gelu_backward_kernel(T *dinp, const T *inp, const T *dout, int64_t n, int64_t packs,
                                     int accumulate) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        P x = ((const P *)inp)[p], g = ((const P *)dout)[p], d;
        if (accumulate) d = ((const P *)dinp)[p];
        for (int j = 0; j < P::N; j++) {
            float v = to_f32(g.v[j]) * gelu_slope(to_f32(x.v[j]));
            d.v[j] = from_f32<T>(accumulate ? to_f32(d.v[j]) + v : v);
        }
        ((P *)dinp)[p] = d;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < n; i += elementwise_stride()) {
        float d = to_f32(dout[i]) * gelu_slope(to_f32(inp[i]));
        dinp[i] = from_f32<T>(accumulate ? to_f32(dinp[i]) + d : d);
    }
}

// out, inp: (n,); out may equal inp
template <typename T> __global__ void tanh_forward_kernel(T *out, const T *inp, int64_t n) {
    for (int64_t i = elementwise_first(); i < n; i += elementwise_stride())
        out[i] = from_f32<T>(tanhf(to_f32(inp[i])));
}

// dinp, out, dout: (n,); dinp += dout * (1 - out^2)
template <typename T> __global__ void tanh_backward_kernel(T *dinp, const T *out, const T *dout, int64_t n) {
    for (int64_t i = elementwise_first(); i < n; i += elementwise_stride()) {
        float y = to_f32(out[i]);
        dinp[i] = from_f32<T>(to_f32(dinp[i]) + to_f32(dout[i]) * (1.0f - y * y));
    }
}

int gelu_forward_cuda(void *out, const void *inp, int64_t n, lf_dtype dtype, cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = elementwise_packs<T>(n, {out, inp});
        gelu_forward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(n, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)out, (const T *)inp, n, packs);
        return lf_launch_status();
    });
}

int gelu_backward_cuda(void *dinp, const void *inp, const void *dout, int64_t n, int accumulate,
                       lf_dtype dtype, cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = elementwise_packs<T>(n, {dinp, inp, dout});
        gelu_backward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(n, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)dinp, (const T *)inp, (const T *)dout, n, packs, accumulate);
        return lf_launch_status();
    });
}

int tanh_forward_cuda(void *out, const void *inp, int64_t n, lf_dtype dtype, cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        tanh_forward_kernel<T>
            <<<elementwise_blocks(n), ELEMENTWISE_THREADS, 0, stream>>>((T *)out, (const T *)inp, n);
        return lf_launch_status();
    });
}

int tanh_backward_cuda(void *dinp, const void *out, const void *dout, int64_t n, lf_dtype dtype,
                       cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        tanh_backward_kernel<T><<<elementwise_blocks(n), ELEMENTWISE_THREADS, 0, stream>>>(
            (T *)dinp, (const T *)out, (const T *)dout, n);
        return lf_launch_status();
    });
}

// Dropout forward and backward: the CUDA twin of csrc/ops/dropout.c, with the CPU's mask
// (lf_dropout_scale of element i of stream key, csrc/ops/random.h).
#include "dropout.cuh"
#include "elementwise.cuh"

// out, in: (n,); out = in * scale (accumulate: out += in * scale), scale of element i 0 or 1/(1-p);
// p == 0 keeps every element with scale 1
template <typename T>
__global__ void dropout_kernel(T *out, const T *in, int64_t n, float p, lf_cuda_key k, int accumulate) {
    uint64_t key = lf_cuda_key_value(k, p);
    for (int64_t i = elementwise_first(); i < n; i += elementwise_stride()) {
        float v = to_f32(in[i]) * lf_dropout_scale(key, (uint64_t)i, p);
        out[i] = from_f32<T>(accumulate ? to_f32(out[i]) + v : v);
    }
}

// out (+)= in * mask over (n,); p <= 0 runs as p == 0, the identity
static int dropout_launch(void *out, const void *in, int64_t n, float p, lf_cuda_key key, int accumulate,
                          lf_dtype dtype, cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    float rate = p <= 0.0f ? 0.0f : p;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        dropout_kernel<T><<<elementwise_blocks(n), ELEMENTWISE_THREADS, 0, stream>>>(
            (T *)out, (const T *)in, n, rate, key, accumulate);
        return lf_launch_status();
    });
}

int dropout_forward_cuda(void *out, const void *in, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                         cudaStream_t stream) {
    if (p <= 0.0f && out == in && n >= 0) return 0; // the identity in place
    return dropout_launch(out, in, n, p, key, 0, dtype, stream);
}

int dropout_backward_cuda(void *din, const void *dout, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                          cudaStream_t stream) {
    return dropout_launch(din, dout, n, p, key, 1, dtype, stream);
}

int dropout_backward_inplace_cuda(void *d, int64_t n, float p, lf_cuda_key key, lf_dtype dtype,
                                  cudaStream_t stream) {
    return dropout_forward_cuda(d, d, n, p, key, dtype, stream);
}

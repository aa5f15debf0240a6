// Residual connections and row gathers over packed tokens: the CUDA twin of csrc/ops/residual.c.
#include "residual.cuh"

template <typename T> __global__ void residual_forward_kernel(T *out, const T *a, const T *b, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

int residual_forward_cuda(void *out, const void *a, const void *b, int64_t n, lf_dtype dtype,
                          cudaStream_t stream) {
    if (n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        residual_forward_kernel<T>
            <<<lf_blocks(n, 256), 256, 0, stream>>>((T *)out, (const T *)a, (const T *)b, n);
        return lf_launch_status();
    });
}

// one block per gathered row; backward adds (index rows are distinct, so no two blocks collide)
template <typename T>
__global__ void gather_rows_kernel(T *dst, const T *src, const int32_t *index, int C, int backward) {
    int b = blockIdx.x;
    size_t row = (size_t)index[b] * C, out = (size_t)b * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        if (backward)
            dst[row + c] = from_f32<T>(to_f32(dst[row + c]) + to_f32(src[out + c]));
        else
            dst[out + c] = src[row + c];
    }
}

int gather_rows_forward_cuda(void *out, const void *inp, const int32_t *index, int B, int C, lf_dtype dtype,
                             cudaStream_t stream) {
    if (B < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (B == 0 || C == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        gather_rows_kernel<T><<<B, 256, 0, stream>>>((T *)out, (const T *)inp, index, C, 0);
        return lf_launch_status();
    });
}

int gather_rows_backward_cuda(void *dinp, const void *dout, const int32_t *index, int B, int C,
                              lf_dtype dtype, cudaStream_t stream) {
    if (B < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (B == 0 || C == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        gather_rows_kernel<T><<<B, 256, 0, stream>>>((T *)dinp, (const T *)dout, index, C, 1);
        return lf_launch_status();
    });
}

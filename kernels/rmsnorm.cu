// RMSNorm forward and backward: the CUDA twin of csrc/ops/rmsnorm.c. One block normalizes one row.
#include "norm_common.cuh"
#include "rmsnorm.cuh"

// out, inp: (N, C), weight: (C,), rstd: (N,) or NULL; block n normalizes row n
template <typename T>
__global__ void rmsnorm_forward_kernel(T *out, float *rstd, const T *inp, const float *weight, int C,
                                       float eps) {
    __shared__ float shared[32];
    size_t row = (size_t)blockIdx.x * C;
    const T *x = inp + row;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = to_f32(x[c]);
        squares += v * v;
    }
    float r = 1.0f / sqrtf(block_sum(squares, shared) / C + eps);
    T *y = out + row;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        y[c] = from_f32<T>(weight[c] * (to_f32(x[c]) * r));
    if (threadIdx.x == 0 && rstd != NULL) rstd[blockIdx.x] = r;
}

int rmsnorm_forward_cuda(void *out, float *rstd, const void *inp, const float *weight, int N, int C,
                         float eps, lf_dtype dtype, cudaStream_t stream) {
    if (N < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (N == 0 || C == 0) return 0;
    if (!out || !inp || !weight) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        rmsnorm_forward_kernel<E>
            <<<N, norm_row_threads(C), 0, stream>>>((E *)out, rstd, (const E *)inp, weight, C, eps);
        return lf_launch_status();
    });
}

// dinp, dout, inp: (N, C), weight: (C,), rstd: (N,); block n adds
// rstd * (g - xhat * mean(g * xhat)) with g = dout * weight, xhat = x * rstd to row n of dinp
template <typename T>
__global__ void rmsnorm_backward_inputs_kernel(T *dinp, const T *dout, const T *inp, const float *weight,
                                               const float *rstd, int C) {
    __shared__ float shared[32];
    size_t row = (size_t)blockIdx.x * C;
    const T *x = inp + row, *dy = dout + row;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        dot += to_f32(dy[c]) * weight[c] * to_f32(x[c]) * r;
    float mean = block_sum(dot, shared) / C;
    T *dx = dinp + row;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float grad = r * (to_f32(dy[c]) * weight[c] - to_f32(x[c]) * r * mean);
        dx[c] = from_f32<T>(to_f32(dx[c]) + grad);
    }
}

int rmsnorm_backward_cuda(void *dinp, float *dweight, const void *dout, const void *inp, const float *weight,
                          const float *rstd, int N, int C, lf_dtype dtype, cudaStream_t stream) {
    if (N < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (N == 0 || C == 0 || (dinp == NULL && dweight == NULL)) return 0;
    if (!dout || !inp || !rstd || (dinp != NULL && !weight)) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        if (dinp != NULL) {
            rmsnorm_backward_inputs_kernel<E><<<N, norm_row_threads(C), 0, stream>>>(
                (E *)dinp, (const E *)dout, (const E *)inp, weight, rstd, C);
            int status = lf_launch_status();
            if (status != 0) return status;
        }
        return norm_columns_launch<E>(dweight, NULL, (const E *)dout, (const E *)inp, NULL, rstd, N, C,
                                      stream);
    });
}

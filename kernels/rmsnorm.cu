// RMSNorm forward and backward: the CUDA twin of csrc/ops/rmsnorm.c. One block normalizes one row.
#include "norm_common.cuh"
#include "rmsnorm.cuh"

// y, x: (C,) one row, weight: (C,); squares: this thread's share of sum(x^2) over the row. The block
// writes y = weight * x * rstd and thread 0 saves rstd[blockIdx.x] when rstd is not NULL. shared: 32
// floats of __shared__ memory.
template <typename T>
__device__ void rmsnorm_row(T *y, float *rstd, const T *x, const float *weight, float squares, int C,
                            float eps, float *shared) {
    float r = 1.0f / sqrtf(block_sum(squares, shared) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        y[c] = from_f32<T>(weight[c] * (to_f32(x[c]) * r));
    if (threadIdx.x == 0 && rstd != NULL) rstd[blockIdx.x] = r;
}

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
    rmsnorm_row(out + row, rstd, x, weight, squares, C, eps, shared);
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

// sum, out, branch, residual: (N, C), weight: (C,), rstd: (N,) or NULL; block n writes row n of
// sum = branch + residual (rounded to T, as residual_forward stores it) and normalizes that stored row.
// Each thread reads an element of branch and residual before it writes that element of sum, and
// reads it back itself, so sum may alias branch or residual.
template <typename T>
__global__ void residual_rmsnorm_forward_kernel(T *sum, T *out, float *rstd, const T *branch,
                                                const T *residual, const float *weight, int C, float eps) {
    __shared__ float shared[32];
    size_t row = (size_t)blockIdx.x * C;
    T *x = sum + row;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        x[c] = from_f32<T>(to_f32(branch[row + c]) + to_f32(residual[row + c]));
        float v = to_f32(x[c]);
        squares += v * v;
    }
    rmsnorm_row(out + row, rstd, (const T *)x, weight, squares, C, eps, shared);
}

int residual_rmsnorm_forward_cuda(void *sum, void *out, float *rstd, const void *branch, const void *residual,
                                  const float *weight, int N, int C, float eps, lf_dtype dtype,
                                  cudaStream_t stream) {
    if (N < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (N == 0 || C == 0) return 0;
    if (!sum || !out || !branch || !residual || !weight) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        residual_rmsnorm_forward_kernel<E><<<N, norm_row_threads(C), 0, stream>>>(
            (E *)sum, (E *)out, rstd, (const E *)branch, (const E *)residual, weight, C, eps);
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

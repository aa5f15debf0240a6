// LayerNorm forward and backward: the CUDA twin of csrc/ops/layernorm.c. One block normalizes one row;
// the statistics are two passes over the row in f32 (mean, then the biased variance about it).
#include "layernorm.cuh"
#include "norm_common.cuh"

// out: (T, C), mean, rstd: (T,), inp: (T, C), weight, bias: (C,); block b normalizes row b
template <typename T>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, const T *inp, const float *weight,
                                         const float *bias, int C, float eps) {
    __shared__ float shared[32];
    size_t row = (size_t)blockIdx.x * C;
    const T *x = inp + row;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        sum += to_f32(x[i]);
    float m = block_sum(sum, shared) / C;
    float squares = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float d = to_f32(x[i]) - m;
        squares += d * d;
    }
    float s = 1.0f / sqrtf(block_sum(squares, shared) / C + eps);
    T *o = out + row;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        o[i] = from_f32<T>((to_f32(x[i]) - m) * s * weight[i] + bias[i]);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = s;
    }
}

int layernorm_forward_cuda(void *out, float *mean, float *rstd, const void *inp, const float *weight,
                           const float *bias, int T, int C, float eps, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!out || !mean || !rstd || !inp || !weight || !bias) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        layernorm_forward_kernel<E><<<T, norm_row_threads(C), 0, stream>>>(
            (E *)out, mean, rstd, (const E *)inp, weight, bias, C, eps);
        return lf_launch_status();
    });
}

// dinp, dout, inp: (T, C), weight: (C,), mean, rstd: (T,); block b adds the input gradient of row b
template <typename T>
__global__ void layernorm_backward_inputs_kernel(T *dinp, const T *dout, const T *inp, const float *weight,
                                                 const float *mean, const float *rstd, int C) {
    __shared__ float shared[32];
    size_t row = (size_t)blockIdx.x * C;
    const T *dy = dout + row, *x = inp + row;
    float m = mean[blockIdx.x], s = rstd[blockIdx.x], dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float dnorm = weight[i] * to_f32(dy[i]);
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * (to_f32(x[i]) - m) * s;
    }
    float dnorm_mean = block_sum(dnorm_sum, shared) / C;
    float dnorm_norm_mean = block_sum(dnorm_norm_sum, shared) / C;
    T *dx = dinp + row;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float norm = (to_f32(x[i]) - m) * s;
        float grad = (weight[i] * to_f32(dy[i]) - dnorm_mean - norm * dnorm_norm_mean) * s;
        dx[i] = from_f32<T>(to_f32(dx[i]) + grad);
    }
}

int layernorm_backward_cuda(void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                            const float *weight, const float *mean, const float *rstd, int T, int C,
                            lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!dinp || !dout || !inp || !weight || !mean || !rstd) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        layernorm_backward_inputs_kernel<E><<<T, norm_row_threads(C), 0, stream>>>(
            (E *)dinp, (const E *)dout, (const E *)inp, weight, mean, rstd, C);
        int status = lf_launch_status();
        if (status != 0) return status;
        return norm_columns_launch<E>(dweight, dbias, (const E *)dout, (const E *)inp, mean, rstd, T, C,
                                      stream);
    });
}

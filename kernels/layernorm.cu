// LayerNorm forward and backward: the CUDA twin of csrc/ops/layernorm.c. One block normalizes one row;
// the statistics are two passes over the row in f32 (mean, then the biased variance about it).
// dropout_residual_layernorm_* fuse the encoder's sublayer end (dropout of the branch, the residual
// add, LayerNorm) into one row kernel per direction, with the unfused chain's roundings to the dtype.
#include "layernorm.cuh"
#include "norm_common.cuh"

// ---- one row, shared by the plain and the fused kernels: thread t of the block holds elements
// t, t + blockDim.x, ... of the row in every pass, so it reads back only what it wrote itself ----

// y: (C,) = (x - mean) * rstd * weight + bias over row x: (C,); partial: this thread's sum of its
// elements of x (the caller sums them as it loads or makes x); thread 0 saves the row's mean, rstd
template <typename T>
__device__ void layernorm_row_forward(T *y, float *mean, float *rstd, const T *x, float partial,
                                      const float *weight, const float *bias, int C, float eps,
                                      float *shared) {
    float m = block_sum(partial, shared) / C;
    float squares = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float d = to_f32(x[i]) - m;
        squares += d * d;
    }
    float s = 1.0f / sqrtf(block_sum(squares, shared) / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        y[i] = from_f32<T>((to_f32(x[i]) - m) * s * weight[i] + bias[i]);
    if (threadIdx.x == 0) {
        *mean = m;
        *rstd = s;
    }
}

// what a row's input gradient needs beyond its element: the row's statistics and the row means of
// dnorm = weight * dout and of dnorm * norm, norm = (x - mean) * rstd
struct layernorm_row_grad {
    float m, s, dnorm_mean, dnorm_norm_mean;
};

// dy, x: (C,) one row of dout and of the forward's input, m, s its mean and rstd
template <typename T>
__device__ layernorm_row_grad layernorm_row_grad_of(const T *dy, const T *x, const float *weight, float m,
                                                    float s, int C, float *shared) {
    float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float dnorm = weight[i] * to_f32(dy[i]);
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * (to_f32(x[i]) - m) * s;
    }
    float dnorm_mean = block_sum(dnorm_sum, shared) / C;
    return {m, s, dnorm_mean, block_sum(dnorm_norm_sum, shared) / C};
}

// the input gradient of one element of the row: dy of dout, x of the input, w its weight
__device__ __forceinline__ float layernorm_input_grad(const layernorm_row_grad &g, float dy, float x,
                                                      float w) {
    float norm = (x - g.m) * g.s;
    return (w * dy - g.dnorm_mean - norm * g.dnorm_norm_mean) * g.s;
}

// ---- LayerNorm ----

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
    layernorm_row_forward(out + row, mean + blockIdx.x, rstd + blockIdx.x, x, sum, weight, bias, C, eps,
                          shared);
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
    layernorm_row_grad g =
        layernorm_row_grad_of(dy, x, weight, mean[blockIdx.x], rstd[blockIdx.x], C, shared);
    T *dx = dinp + row;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        dx[i] = from_f32<T>(to_f32(dx[i]) + layernorm_input_grad(g, to_f32(dy[i]), to_f32(x[i]), weight[i]));
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

// ---- dropout, residual add, LayerNorm fused ----

// out, sum, branch, residual: (T, C), mean, rstd: (T,), weight, bias: (C,); block b makes row b of
// sum = dropout(branch) + residual (each step rounded to T, as the unfused chain stores it) and
// normalizes it. sum may alias branch or residual: each thread reads its elements before writing them.
template <typename T>
__global__ void dropout_residual_layernorm_forward_kernel(T *out, float *mean, float *rstd, T *sum,
                                                          const T *branch, const T *residual,
                                                          const float *weight, const float *bias, int C,
                                                          float eps, float p, lf_cuda_key k) {
    __shared__ float shared[32];
    const uint64_t key = lf_cuda_key_value(k, p);
    size_t row = (size_t)blockIdx.x * C;
    T *x = sum + row;
    float partial = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        size_t k = row + i;
        // __fmul_rn: no contraction with the add below, so f32 rounds as the unfused chain does
        float kept = to_f32(from_f32<T>(__fmul_rn(to_f32(branch[k]), lf_dropout_scale(key, (uint64_t)k, p))));
        T v = from_f32<T>(kept + to_f32(residual[k]));
        x[i] = v;
        partial += to_f32(v);
    }
    layernorm_row_forward(out + row, mean + blockIdx.x, rstd + blockIdx.x, (const T *)x, partial, weight,
                          bias, C, eps, shared);
}

int dropout_residual_layernorm_forward_cuda(void *out, float *mean, float *rstd, void *sum,
                                            const void *branch, const void *residual, const float *weight,
                                            const float *bias, int T, int C, float eps, float p,
                                            lf_cuda_key key, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!out || !mean || !rstd || !sum || !branch || !residual || !weight || !bias)
        return (int)cudaErrorInvalidValue;
    float rate = p <= 0.0f ? 0.0f : p;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        dropout_residual_layernorm_forward_kernel<E>
            <<<T, norm_row_threads(C), 0, stream>>>((E *)out, mean, rstd, (E *)sum, (const E *)branch,
                                                    (const E *)residual, weight, bias, C, eps, rate, key);
        return lf_launch_status();
    });
}

// dresidual, dbranch, dout, sum: (T, C), weight: (C,), mean, rstd: (T,); block b writes row b of
// dresidual = d sum (LayerNorm's input gradient, rounded to T) and dbranch = dropout of it. Either
// output may alias dout: each thread reads its elements before writing them.
template <typename T>
__global__ void dropout_residual_layernorm_backward_kernel(T *dresidual, T *dbranch, const T *dout,
                                                           const T *sum, const float *weight,
                                                           const float *mean, const float *rstd, int C,
                                                           float p, lf_cuda_key k) {
    __shared__ float shared[32];
    const uint64_t key = lf_cuda_key_value(k, p);
    size_t row = (size_t)blockIdx.x * C;
    const T *dy = dout + row, *x = sum + row;
    layernorm_row_grad g =
        layernorm_row_grad_of(dy, x, weight, mean[blockIdx.x], rstd[blockIdx.x], C, shared);
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        size_t k = row + i;
        T d = from_f32<T>(layernorm_input_grad(g, to_f32(dy[i]), to_f32(x[i]), weight[i]));
        dresidual[k] = d;
        dbranch[k] = from_f32<T>(to_f32(d) * lf_dropout_scale(key, (uint64_t)k, p));
    }
}

int dropout_residual_layernorm_backward_cuda(void *dresidual, void *dbranch, float *dweight, float *dbias,
                                             const void *dout, const void *sum, const float *weight,
                                             const float *mean, const float *rstd, int T, int C, float p,
                                             lf_cuda_key key, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!dresidual || !dbranch || dresidual == dbranch || !dout || !sum || !weight || !mean || !rstd)
        return (int)cudaErrorInvalidValue;
    float rate = p <= 0.0f ? 0.0f : p;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        // the column sums first: they read dout, which the rows may overwrite
        int status =
            norm_columns_launch<E>(dweight, dbias, (const E *)dout, (const E *)sum, mean, rstd, T, C, stream);
        if (status != 0) return status;
        dropout_residual_layernorm_backward_kernel<E><<<T, norm_row_threads(C), 0, stream>>>(
            (E *)dresidual, (E *)dbranch, (const E *)dout, (const E *)sum, weight, mean, rstd, C, rate, key);
        return lf_launch_status();
    });
}

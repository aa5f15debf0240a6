// Embedding forward and backward: the CUDA twin of csrc/ops/embedding.c. One block per token row.
#include "embedding.cuh"

enum { EMBEDDING_THREADS = 128 };

// out: (T, C) of T_out (+)= table: (V, C) of W[ids[t]]; block t writes row t
template <typename T_out, typename W>
__global__ void embedding_forward_kernel(T_out *out, const int32_t *ids, const W *table, int V, int C,
                                         int accumulate) {
    int32_t id = ids[blockIdx.x];
    if (id < 0 || id >= V) return; // invalid ids are the caller's error: skip, never read outside table
    const W *row = table + (size_t)id * C;
    T_out *o = out + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = to_f32(row[c]);
        o[c] = from_f32<T_out>(accumulate ? to_f32(o[c]) + v : v);
    }
}

int embedding_forward_cuda(void *out, const int32_t *ids, const void *table, lf_dtype table_dtype, int V,
                           int T, int C, int accumulate, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0 || V < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!out || !ids || !table) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(table_dtype, [&](auto w) {
        using W = decltype(w);
        return lf_dispatch_dtype(dtype, [&](auto t) {
            using E = decltype(t);
            embedding_forward_kernel<E, W>
                <<<T, EMBEDDING_THREADS, 0, stream>>>((E *)out, ids, (const W *)table, V, C, accumulate);
            return lf_launch_status();
        });
    });
}

// dtable: (V, C) += dout: (T, C) row t at ids[t]; block t adds row t with atomicAdd (ids repeat)
template <typename T>
__global__ void embedding_backward_kernel(float *dtable, const T *dout, const int32_t *ids, int V, int C) {
    int32_t id = ids[blockIdx.x];
    if (id < 0 || id >= V) return;
    float *row = dtable + (size_t)id * C;
    const T *dy = dout + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        atomicAdd(row + c, to_f32(dy[c]));
}

int embedding_backward_cuda(float *dtable, const void *dout, const int32_t *ids, int V, int T, int C,
                            lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 0 || V < 0) return (int)cudaErrorInvalidValue;
    if (T == 0 || C == 0) return 0;
    if (!dtable || !dout || !ids) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        embedding_backward_kernel<E><<<T, EMBEDDING_THREADS, 0, stream>>>(dtable, (const E *)dout, ids, V, C);
        return lf_launch_status();
    });
}

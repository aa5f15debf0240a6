// SwiGLU (silu(gate) * up) forward and backward: the CUDA twin of csrc/ops/silu_mul.c.
#include "elementwise.cuh"
#include "silu_mul.cuh"

__device__ __forceinline__ float sigmoid_of(float g) { return 1.0f / (1.0f + expf(-g)); }
__device__ __forceinline__ float silu_mul_of(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// where element i of a (rows, cols) matrix packed in out is in gate and up, whose rows are ld apart
struct silu_rows {
    int64_t cols, ld;
    __device__ __forceinline__ int64_t at(int64_t i) const {
        return cols == ld ? i : i / cols * ld + i % cols;
    }
};

// out: (N,) = (rows, cols), gate, up: rows as r says; the first `packs` packs as 16-byte vectors (silu_packs)
template <typename T>
__global__ void silu_mul_forward_kernel(T *out, const T *gate, const T *up, int64_t N, int64_t packs,
                                        silu_rows r) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        const int64_t x = r.at(p * P::N) / P::N;
        P g = ((const P *)gate)[x], u = ((const P *)up)[x], o;
        for (int j = 0; j < P::N; j++)
            o.v[j] = from_f32<T>(silu_mul_of(to_f32(g.v[j]), to_f32(u.v[j])));
        ((P *)out)[p] = o;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < N; i += elementwise_stride())
        out[i] = from_f32<T>(silu_mul_of(to_f32(gate[r.at(i)]), to_f32(up[r.at(i)])));
}

// element i of the backward: dgate, dup (+)= dy * u * silu'(g), dy * silu(g), with silu'(g) = s * (1 + g * (1
// - s)), s = sigmoid(g)
template <typename T>
__device__ __forceinline__ void silu_mul_grad(T *dgate, T *dup, float dy, float g, float u, int accumulate) {
    float s = sigmoid_of(g), dg = dy * u * s * (1.0f + g * (1.0f - s)), du = dy * g * s;
    *dgate = from_f32<T>(accumulate ? to_f32(*dgate) + dg : dg);
    *dup = from_f32<T>(accumulate ? to_f32(*dup) + du : du);
}

// dout: (N,) = (rows, cols); dgate, dup, gate, up: rows as r says; dgate and dup written, added to with
// accumulate; packs as forward's
template <typename T>
__global__ void silu_mul_backward_kernel(T *dgate, T *dup, const T *dout, const T *gate, const T *up,
                                         int64_t N, int64_t packs, int accumulate, silu_rows r) {
    using P = elementwise_pack<T>;
    for (int64_t p = elementwise_first(); p < packs; p += elementwise_stride()) {
        const int64_t x = r.at(p * P::N) / P::N;
        P dy = ((const P *)dout)[p], g = ((const P *)gate)[x], u = ((const P *)up)[x], dg, du;
        if (accumulate) dg = ((const P *)dgate)[x], du = ((const P *)dup)[x];
        for (int j = 0; j < P::N; j++)
            silu_mul_grad(&dg.v[j], &du.v[j], to_f32(dy.v[j]), to_f32(g.v[j]), to_f32(u.v[j]), accumulate);
        ((P *)dgate)[x] = dg, ((P *)dup)[x] = du;
    }
    for (int64_t i = packs * P::N + elementwise_first(); i < N; i += elementwise_stride()) {
        const int64_t x = r.at(i);
        silu_mul_grad(&dgate[x], &dup[x], to_f32(dout[i]), to_f32(gate[x]), to_f32(up[x]), accumulate);
    }
}

// the packs of the (rows, cols) elements that run as 16-byte vectors: all but the last elements when the
// pointers are aligned and every row (cols, ld) is whole packs, else none
template <typename T>
static int64_t silu_packs(int64_t N, silu_rows r, std::initializer_list<const void *> ptrs) {
    if (r.cols != r.ld && (r.cols % elementwise_pack<T>::N != 0 || r.ld % elementwise_pack<T>::N != 0))
        return 0;
    return elementwise_packs<T>(N, ptrs);
}

int silu_mul_forward_cuda(void *out, const void *gate, const void *up, int64_t rows, int64_t cols, int64_t ld,
                          lf_dtype dtype, cudaStream_t stream) {
    if (rows < 0 || cols < 0 || ld < cols) return (int)cudaErrorInvalidValue;
    const int64_t N = rows * cols;
    if (N == 0) return 0;
    const silu_rows r = {cols, ld};
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = silu_packs<T>(N, r, {out, gate, up});
        silu_mul_forward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(N, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)out, (const T *)gate, (const T *)up, N, packs, r);
        return lf_launch_status();
    });
}

int silu_mul_backward_cuda(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                           int64_t rows, int64_t cols, int64_t ld, int accumulate, lf_dtype dtype,
                           cudaStream_t stream) {
    if (rows < 0 || cols < 0 || ld < cols) return (int)cudaErrorInvalidValue;
    const int64_t N = rows * cols;
    if (N == 0) return 0;
    const silu_rows r = {cols, ld};
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using T = decltype(t);
        const int64_t packs = silu_packs<T>(N, r, {dgate, dup, dout, gate, up});
        silu_mul_backward_kernel<T>
            <<<elementwise_blocks(elementwise_threads<T>(N, packs)), ELEMENTWISE_THREADS, 0, stream>>>(
                (T *)dgate, (T *)dup, (const T *)dout, (const T *)gate, (const T *)up, N, packs, accumulate,
                r);
        return lf_launch_status();
    });
}

// The LoRA branch of a linear layer: the CUDA twin of csrc/ops/lora.c.
//
// Its products have one small side (r ranks), so three kernels do them all, with f32 weights
// reached through strides so that A: (r, C) and B: (OC, r) both read as a (rank, column) matrix:
// - lora_down: dst (T, r) = alpha * in (T, K) @ W^T, the u and du products (a tiled K loop);
// - lora_up: out (T, N) += alpha * left (T, r) @ W, the out and dx products (one column per thread);
// - lora_grad: dW (r, N) += alpha * left^T @ right (T, N), the dA and dB products (blocks of rows
//   add their partial sums with atomicAdd).
// Dropout of x is applied where x is read (and on dx where it is written), with the CPU's mask.
#include "lora.cuh"

enum {
    LORA_THREADS = 256,
    DOWN_ROWS = 16, // lora_down: a block computes DOWN_ROWS rows x DOWN_RANKS ranks of dst,
    DOWN_RANKS = 64,
    DOWN_K = 64,     // stepping over K DOWN_K columns at a time
    UP_ROWS = 16,    // lora_up: a block computes UP_ROWS rows x LORA_THREADS columns of out,
    UP_RANKS = 64,   // stepping over the ranks UP_RANKS at a time
    GRAD_ROWS = 128, // lora_grad: a block sums GRAD_ROWS rows for LORA_THREADS columns x GRAD_RANKS ranks
    GRAD_RANKS = 16,
};

// x * its inverted-dropout factor (element e of stream key), or x when p == 0
__device__ __forceinline__ float dropped(float x, int64_t e, float p, uint64_t key) {
    return p > 0.0f ? x * dropout_scale_device(key, (uint64_t)e, p) : x;
}

// dst: (rows, r) f32 = alpha * drop(in): (rows, K) @ W^T, W[j, k] = w[j * w_rank + k * w_col] f32;
// drop: dropout of element t * K + k. Block (blockIdx.x, blockIdx.y): DOWN_ROWS rows x DOWN_RANKS ranks;
// each step stages DOWN_K columns of in and of W in shared memory (rows padded against bank conflicts).
template <typename E>
__global__ void lora_down_kernel(float *dst, const E *in, const float *w, int64_t w_rank, int64_t w_col,
                                 int rows, int K, int r, float alpha, float p, uint64_t key) {
    constexpr int PER_THREAD = DOWN_ROWS * DOWN_RANKS / LORA_THREADS;
    static_assert(PER_THREAD * LORA_THREADS == DOWN_ROWS * DOWN_RANKS, "outputs split evenly over threads");
    __shared__ float xs[DOWN_ROWS][DOWN_K + 1];
    __shared__ float ws[DOWN_RANKS][DOWN_K + 1];
    const int t0 = blockIdx.x * DOWN_ROWS, j0 = blockIdx.y * DOWN_RANKS;
    const int nj = min(DOWN_RANKS, r - j0);
    int out_row[PER_THREAD], out_rank[PER_THREAD]; // this thread's outputs; out_row >= DOWN_ROWS: none
    float acc[PER_THREAD];
#pragma unroll
    for (int o = 0; o < PER_THREAD; o++) {
        const int idx = threadIdx.x + o * LORA_THREADS;
        out_row[o] = idx / nj;
        out_rank[o] = idx % nj;
        acc[o] = 0.0f;
    }
    for (int k0 = 0; k0 < K; k0 += DOWN_K) {
        for (int i = threadIdx.x; i < DOWN_ROWS * DOWN_K; i += LORA_THREADS) {
            const int row = i / DOWN_K, k = i % DOWN_K, t = t0 + row, kk = k0 + k;
            float v = 0.0f;
            if (t < rows && kk < K) {
                const int64_t e = (int64_t)t * K + kk;
                v = dropped(to_f32(in[e]), e, p, key);
            }
            xs[row][k] = v;
        }
        for (int i = threadIdx.x; i < nj * DOWN_K; i += LORA_THREADS) {
            const int j = i / DOWN_K, k = i % DOWN_K, kk = k0 + k;
            ws[j][k] = kk < K ? w[(int64_t)(j0 + j) * w_rank + (int64_t)kk * w_col] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int o = 0; o < PER_THREAD; o++) {
            if (out_row[o] >= DOWN_ROWS) continue;
            const float *xr = xs[out_row[o]], *wr = ws[out_rank[o]];
            float s = 0.0f;
            for (int k = 0; k < DOWN_K; k++)
                s += xr[k] * wr[k];
            acc[o] += s;
        }
        __syncthreads();
    }
#pragma unroll
    for (int o = 0; o < PER_THREAD; o++)
        if (out_row[o] < DOWN_ROWS && t0 + out_row[o] < rows)
            dst[(int64_t)(t0 + out_row[o]) * r + j0 + out_rank[o]] = alpha * acc[o];
}

// out: (rows, N) of E += drop(alpha * left: (rows, r) f32 @ W), W[j, n] = w[j * w_rank + n * w_col] f32;
// drop: dropout of element t * N + n (dropout's backward on dx). Block (blockIdx.x, blockIdx.y):
// UP_ROWS rows x LORA_THREADS columns, one column per thread; left's rows staged in shared memory.
template <typename E>
__global__ void lora_up_kernel(E *out, const float *left, const float *w, int64_t w_rank, int64_t w_col,
                               int rows, int N, int r, float alpha, float p, uint64_t key) {
    __shared__ float ls[UP_ROWS][UP_RANKS];
    const int t0 = blockIdx.x * UP_ROWS, n = blockIdx.y * LORA_THREADS + threadIdx.x;
    float acc[UP_ROWS];
#pragma unroll
    for (int row = 0; row < UP_ROWS; row++)
        acc[row] = 0.0f;
    for (int j0 = 0; j0 < r; j0 += UP_RANKS) {
        const int nj = min(UP_RANKS, r - j0);
        for (int i = threadIdx.x; i < UP_ROWS * UP_RANKS; i += LORA_THREADS) {
            const int row = i / UP_RANKS, j = i % UP_RANKS;
            ls[row][j] = t0 + row < rows && j < nj ? left[(int64_t)(t0 + row) * r + j0 + j] : 0.0f;
        }
        __syncthreads();
        if (n < N) {
            for (int j = 0; j < nj; j++) {
                const float wv = w[(int64_t)(j0 + j) * w_rank + (int64_t)n * w_col];
#pragma unroll
                for (int row = 0; row < UP_ROWS; row++)
                    acc[row] += ls[row][j] * wv;
            }
        }
        __syncthreads();
    }
    if (n >= N) return;
#pragma unroll
    for (int row = 0; row < UP_ROWS; row++) {
        if (t0 + row >= rows) break;
        const int64_t e = (int64_t)(t0 + row) * N + n;
        out[e] = from_f32<E>(to_f32(out[e]) + dropped(alpha * acc[row], e, p, key));
    }
}

// dW[j, n] += alpha * sum_t left[t, j] * drop(right[t, n]), dW[j, n] = dw[j * dw_rank + n * dw_col] f32;
// left: (rows, r) f32, right: (rows, N) of E; drop: dropout of element t * N + n. Block (blockIdx.x,
// blockIdx.y, blockIdx.z): GRAD_ROWS rows x LORA_THREADS columns x GRAD_RANKS ranks; blocks of other
// rows add into the same dW elements, so the sums go in with atomicAdd.
template <typename E>
__global__ void lora_grad_kernel(float *dw, int64_t dw_rank, int64_t dw_col, const float *left,
                                 const E *right, int rows, int N, int r, float alpha, float p, uint64_t key) {
    __shared__ float ls[GRAD_ROWS][GRAD_RANKS];
    const int t0 = blockIdx.x * GRAD_ROWS, n = blockIdx.y * LORA_THREADS + threadIdx.x;
    const int j0 = blockIdx.z * GRAD_RANKS;
    const int nt = min(GRAD_ROWS, rows - t0), nj = min(GRAD_RANKS, r - j0);
    for (int i = threadIdx.x; i < GRAD_ROWS * GRAD_RANKS; i += LORA_THREADS) {
        const int row = i / GRAD_RANKS, j = i % GRAD_RANKS;
        ls[row][j] = row < nt && j < nj ? left[(int64_t)(t0 + row) * r + j0 + j] : 0.0f;
    }
    __syncthreads();
    if (n >= N) return;
    float acc[GRAD_RANKS];
#pragma unroll
    for (int j = 0; j < GRAD_RANKS; j++)
        acc[j] = 0.0f;
    for (int row = 0; row < nt; row++) {
        const int64_t e = (int64_t)(t0 + row) * N + n;
        const float v = dropped(to_f32(right[e]), e, p, key);
#pragma unroll
        for (int j = 0; j < GRAD_RANKS; j++)
            acc[j] += ls[row][j] * v;
    }
#pragma unroll
    for (int j = 0; j < GRAD_RANKS; j++)
        if (j < nj) atomicAdd(&dw[(int64_t)(j0 + j) * dw_rank + (int64_t)n * dw_col], alpha * acc[j]);
}

static unsigned chunks(int64_t n, int size) { return (unsigned)((n + size - 1) / size); }

template <typename E>
static int lora_down(float *dst, const E *in, const float *w, int64_t w_rank, int64_t w_col, int rows, int K,
                     int r, float alpha, float p, uint64_t key, cudaStream_t stream) {
    const dim3 grid(chunks(rows, DOWN_ROWS), chunks(r, DOWN_RANKS));
    lora_down_kernel<E>
        <<<grid, LORA_THREADS, 0, stream>>>(dst, in, w, w_rank, w_col, rows, K, r, alpha, p, key);
    return lf_launch_status();
}

template <typename E>
static int lora_up(E *out, const float *left, const float *w, int64_t w_rank, int64_t w_col, int rows, int N,
                   int r, float alpha, float p, uint64_t key, cudaStream_t stream) {
    const dim3 grid(chunks(rows, UP_ROWS), chunks(N, LORA_THREADS));
    lora_up_kernel<E>
        <<<grid, LORA_THREADS, 0, stream>>>(out, left, w, w_rank, w_col, rows, N, r, alpha, p, key);
    return lf_launch_status();
}

template <typename E>
static int lora_grad(float *dw, int64_t dw_rank, int64_t dw_col, const float *left, const E *right, int rows,
                     int N, int r, float alpha, float p, uint64_t key, cudaStream_t stream) {
    const dim3 grid(chunks(rows, GRAD_ROWS), chunks(N, LORA_THREADS), chunks(r, GRAD_RANKS));
    lora_grad_kernel<E>
        <<<grid, LORA_THREADS, 0, stream>>>(dw, dw_rank, dw_col, left, right, rows, N, r, alpha, p, key);
    return lf_launch_status();
}

size_t lora_scratch_bytes(int T, int r) { return T > 0 && r > 0 ? (size_t)T * (size_t)r * sizeof(float) : 0; }

// sizes the kernels' grids can hold (gridDim.y, gridDim.z <= 65535) and a dropout probability in [0, 1)
static int lora_sizes_ok(int T, int C, int OC, int r, float p) {
    const int64_t max_columns = (int64_t)65535 * LORA_THREADS, max_ranks = (int64_t)65535 * GRAD_RANKS;
    return T >= 0 && C >= 1 && OC >= 1 && r >= 1 && C <= max_columns && OC <= max_columns && r <= max_ranks &&
           p >= 0.0f && p < 1.0f;
}

int lora_forward_cuda(void *out, float *u, const void *x, const float *A, const float *B, int T, int C,
                      int OC, int r, float scaling, float p, uint64_t key, lf_dtype dtype,
                      cudaStream_t stream) {
    if (!lora_sizes_ok(T, C, OC, r, p)) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        // u = dropout(x) @ A^T: A[j, c] = A[j * C + c]
        int rc = lora_down<E>(u, (const E *)x, A, C, 1, T, C, r, 1.0f, p, key, stream);
        // out += scaling * u @ B^T: B^T[j, o] = B[o * r + j]
        if (rc == 0) rc = lora_up<E>((E *)out, u, B, 1, r, T, OC, r, scaling, 0.0f, key, stream);
        return rc;
    });
}

int lora_backward_cuda(void *dx, float *dA, float *dB, void *scratch, const void *dout, const void *x,
                       const float *u, const float *A, const float *B, int T, int C, int OC, int r,
                       float scaling, float p, uint64_t key, lf_dtype dtype, cudaStream_t stream) {
    if (!lora_sizes_ok(T, C, OC, r, p)) return (int)cudaErrorInvalidValue;
    if ((dx != nullptr || dA != nullptr) && scratch == nullptr) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    float *du = (float *)scratch;
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        const E *dout_e = (const E *)dout;
        int rc = 0;
        // dB[o, j] = dB[o * r + j] += scaling * sum_t u[t, j] * dout[t, o]
        if (dB != nullptr) rc = lora_grad<E>(dB, 1, r, u, dout_e, T, OC, r, scaling, 0.0f, key, stream);
        if (dx == nullptr && dA == nullptr) return rc;
        // du = scaling * dout @ B: B[o, j] = B[o * r + j], read as W[j, o]
        if (rc == 0) rc = lora_down<E>(du, dout_e, B, 1, r, T, OC, r, scaling, 0.0f, key, stream);
        // dA[j, c] = dA[j * C + c] += sum_t du[t, j] * dropout(x)[t, c]
        if (rc == 0 && dA != nullptr)
            rc = lora_grad<E>(dA, C, 1, du, (const E *)x, T, C, r, 1.0f, p, key, stream);
        // dx += dropout'(du @ A)
        if (rc == 0 && dx != nullptr) rc = lora_up<E>((E *)dx, du, A, C, 1, T, C, r, 1.0f, p, key, stream);
        return rc;
    });
}

// The LoRA branch of a linear layer: the CUDA twin of csrc/ops/lora.c, the branches of a group (the
// linears that read the same x) in three launches: one forward, two backward.
//
// Its products have one small side (r ranks). The f32 weights are reached through a rank_view, so that
// A: (r, C) and B: (OC, r) both read as a (rank, column) matrix W. The pieces:
// - rows_down: dst[t, :] = alpha * in[t, :] @ W^T for TT tokens per block (the u and du products): the
//   block's threads split the columns, a 16-byte pack of in each where it is aligned, and each step of RC
//   ranks ends in a fixed-order block reduction (the same bits on every run);
// - up_pack: out[t, n] += scaling * u[t, :] @ B[n, :] for a 16-byte pack of columns of one token, its sum
//   over the ranks in the CPU's order;
// - columns_up / columns_grad, a thread per column of COLS columns, over a group of tokens:
//   dx[t, n] += sum_k drop_k(left_k[t, :] @ W_k[:, n]) and dW[:, n] += alpha * sum_t left[t, :] right[t, n]
//   (the dA and dB products; the group's sums go in with atomicAdd, one per element and group: at most
//   MAX_GROUPS per element whatever T).
// The launches, a grid row (blockIdx.y) per branch: lora_forward_kernel (u of TT tokens, then their out),
// lora_dout_kernel (du tiles and dB groups: its blocks read dout, each for one of them), lora_du_kernel
// (dx of every branch summed, on row 0, and the row's dA, per column chunk of a group: both read du). u and
// du are deterministic; the sums over tokens of dA and dB use f32 atomics rather than a second reduction
// pass (a launch and scratch of its own): the order of the adds, and so the last bits of dA and dB, varies
// from run to run.
// Dropout of x is applied where x is read (and on dx where it is written), with the CPU's mask.
#include <algorithm>
#include <type_traits>

#include "elementwise.cuh"
#include "lora.cuh"

enum {
    LORA_THREADS = 256,  // lora_dout_kernel, lora_du_kernel
    SMALL_THREADS = 128, // lora_forward_kernel
    MAX_WARPS = LORA_THREADS / 32,
    COLS = LORA_THREADS,   // columns_up / columns_grad: a thread per column
    SUB_ROWS = 32,         // columns_up in lora_du_kernel: rows whose sums a thread holds
    MAX_GROUPS = 32,       // the token groups of the sums over tokens (groups of a multiple of SUB_ROWS rows)
    MAX_RANKS = 16,        // ranks per step (RC): 4 (r <= 4) or 16
    MAX_TT = 4,            // tokens per block of rows_down
    ONE_LAUNCH_CHUNKS = 4, // the backward in one launch for C <= 4 * COLS (lora_backward_kernel)
    // shared memory: columns_up's W tile and left rows (more than rows_down's warp sums)
    SMEM_FLOATS = COLS * (MAX_RANKS + 1) + SUB_ROWS * MAX_RANKS,
    DOWN_FLOATS = MAX_WARPS * MAX_TT * MAX_RANKS,
};
static_assert(DOWN_FLOATS <= SMEM_FLOATS, "rows_down's warp sums fit");

// the tokens per block of rows_down for RC ranks per step: 2 (r <= 4, many blocks for few tokens) or 4
// (W's RC rows are read once per block from L2: fewer, larger blocks read less of them)
template <int RC> __host__ __device__ constexpr int tokens_per_block() { return RC <= 4 ? 2 : MAX_TT; }

// element (j, n) of W: w[j * rank + n * col]; A: (r, C) is {C, 1}, B: (OC, r) is {1, r}
struct rank_view {
    int64_t rank, col;
    __device__ int64_t at(int j, int n) const { return (int64_t)j * rank + (int64_t)n * col; }
};

// x * its inverted-dropout factor (element e of stream key), or x when p == 0
__device__ __forceinline__ float dropped(float x, int64_t e, float p, uint64_t key) {
    return p > 0.0f ? x * lf_dropout_scale(key, (uint64_t)e, p) : x;
}

// f(j, n) for j < nj, n < nn over the block's threads, consecutive threads along W's contiguous index
// (columns of A, ranks of B), so that what f reads or writes of W is coalesced
template <typename F> __device__ void for_tile(rank_view v, int nj, int nn, F f) {
    for (int e = threadIdx.x; e < nj * nn; e += blockDim.x) {
        if (v.col == 1)
            f(e / nn, e % nn);
        else
            f(e % nj, e / nj);
    }
}

// ls[row * RC + j] = left[t0 + row, j0 + j] for row < nt, j < RC (0 for j >= nj); left: (rows, r) f32
template <int RC>
__device__ void stage_left(float *ls, const float *left, int t0, int nt, int j0, int nj, int r) {
    for (int e = threadIdx.x; e < nt * RC; e += blockDim.x) {
        const int row = e / RC, j = e % RC;
        ls[e] = j < nj ? left[(int64_t)(t0 + row) * r + j0 + j] : 0.0f;
    }
}

// x[i] = in[e + i] for i < N (16 bytes of E), 0 for i >= nv; one 16-byte load when packed (e aligned)
template <typename E>
__device__ __forceinline__ void load_pack(float *x, const E *in, int64_t e, int nv, bool packed) {
    using P = elementwise_pack<E>;
    if (packed) {
        const P q = *(const P *)(in + e);
#pragma unroll
        for (int i = 0; i < P::N; i++)
            x[i] = to_f32(q.v[i]);
        return;
    }
#pragma unroll
    for (int i = 0; i < P::N; i++)
        x[i] = i < nv ? to_f32(in[e + i]) : 0.0f;
}

// dst: (rows, r) f32, dst[t, j] = alpha * sum_k drop(in[t, k]) W[j, k] for the TT tokens t0 .. t0 + TT - 1
// (those < rows); in: (rows, K) of E, rows ld apart, drop: dropout of element t * K + k; packed: in 16-byte
// aligned and K and ld multiples of a pack. Thread i takes the packs i, i + blockDim.x, ... of every token's
// row, its partial sums of RC ranks in registers; a step of ranks ends with warp sums, then the warps' sums
// added in warp order.
template <typename E, int RC, int TT>
__device__ void rows_down(float *smem, float *dst, const E *in, int64_t ld, const float *w, rank_view v,
                          int t0, int rows, int K, int r, float alpha, float p, uint64_t key, bool packed) {
    constexpr int N = elementwise_pack<E>::N;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    const int nt = min(TT, rows - t0);
    for (int j0 = 0; j0 < r; j0 += RC) {
        const int nj = min(RC, r - j0);
        float acc[TT][RC] = {};
        for (int c0 = threadIdx.x * N; c0 < K; c0 += blockDim.x * N) {
            const int nc = min(N, K - c0);
            float x[TT][N];
#pragma unroll
            for (int s = 0; s < TT; s++) {
                const int64_t e = (int64_t)(t0 + s) * K + c0;
                load_pack(x[s], in, (int64_t)(t0 + s) * ld + c0, s < nt ? nc : 0, packed && s < nt);
#pragma unroll
                for (int i = 0; i < N; i++)
                    x[s][i] = dropped(x[s][i], e + i, p, key);
            }
#pragma unroll
            for (int i = 0; i < N; i++) {
                if (i >= nc) break;
#pragma unroll
                for (int j = 0; j < RC; j++) {
                    const float wj = j < nj ? w[v.at(j0 + j, c0 + i)] : 0.0f;
#pragma unroll
                    for (int s = 0; s < TT; s++)
                        acc[s][j] += x[s][i] * wj;
                }
            }
        }
        __syncthreads(); // the previous step's sums are read
#pragma unroll
        for (int s = 0; s < TT; s++) {
#pragma unroll
            for (int j = 0; j < RC; j++) {
                const float sum = warp_sum(acc[s][j]);
                if (lane == 0) smem[(warp * TT + s) * RC + j] = sum;
            }
        }
        __syncthreads();
        const int s = threadIdx.x / RC, j = threadIdx.x % RC;
        if (s >= nt || j >= nj) continue;
        float sum = 0.0f;
        for (int k = 0; k < nw; k++)
            sum += smem[(k * TT + s) * RC + j];
        dst[(int64_t)(t0 + s) * r + j0 + j] = alpha * sum;
    }
}

// the branches of a group as the kernels take them: packed[k], branch k's out (dout) rows run as 16-byte
// packs
struct lora_group {
    lora_branch b[LORA_MAX_BRANCHES];
    bool packed[LORA_MAX_BRANCHES];
    int n;
};

// dx: (rows, N) of E, dx[t, n] += sum_k drop_k(sum_j du_k[t, j] A_k[j, n]) over the branches k of g, for
// tokens t0 .. t0 + nt - 1 and columns n0 .. n0 + COLS - 1 (< N), a thread per column; du_k: (rows, r) f32
// at du + k * rows * r, written by an earlier launch; drop_k: branch k's dropout of element t * N + n. ROWS
// tokens at a time: their sums stay in registers over the branches and steps of RC ranks (A's and du's
// staged in shared memory); each branch's sum is dropped, then added to the total in branch order.
template <typename E, int RC, int ROWS>
__device__ void columns_up(float *smem, E *dx, const lora_group &g, const float *du, int rows, int t0, int nt,
                           int n0, int N, int r, float p) {
    float *ws = smem, *ls = smem + COLS * (RC + 1);
    const int i = threadIdx.x, nn = min(COLS, N - n0);
    const rank_view v = rank_view{N, 1};
    for (int s0 = 0; s0 < nt; s0 += ROWS) {
        const int ns = min(ROWS, nt - s0);
        float total[ROWS] = {};
        for (int k = 0; k < g.n; k++) {
            const float *w = g.b[k].A, *left = du + (int64_t)k * rows * r;
            const uint64_t key = lf_cuda_key_value(g.b[k].key, p);
            float acc[ROWS] = {};
            for (int j0 = 0; j0 < r; j0 += RC) {
                const int nj = min(RC, r - j0);
                __syncthreads(); // the previous tiles are read
                for_tile(v, nj, nn, [&](int j, int n) { ws[n * (RC + 1) + j] = w[v.at(j0 + j, n0 + n)]; });
                stage_left<RC>(ls, left, t0 + s0, ns, j0, nj, r);
                __syncthreads();
                float wj[RC];
#pragma unroll
                for (int j = 0; j < RC; j++)
                    wj[j] = i < nn && j < nj ? ws[i * (RC + 1) + j] : 0.0f;
#pragma unroll
                for (int row = 0; row < ROWS; row++) {
                    if (row >= ns) break;
#pragma unroll
                    for (int j = 0; j < RC; j++)
                        acc[row] += ls[row * RC + j] * wj[j];
                }
            }
#pragma unroll
            for (int row = 0; row < ROWS; row++)
                total[row] += dropped(acc[row], (int64_t)(t0 + s0 + row) * N + n0 + i, p, key);
        }
        if (i >= nn) continue;
#pragma unroll
        for (int row = 0; row < ROWS; row++) {
            if (row >= ns) break;
            const int64_t e = (int64_t)(t0 + s0 + row) * N + n0 + i;
            dx[e] = from_f32<E>(to_f32(dx[e]) + total[row]);
        }
    }
}

// dW[j, n] += alpha * sum_t left[t, j] drop(right[t, n]) for tokens t0 .. t0 + nt - 1 and columns n0 ..
// n0 + COLS - 1 (< N), a thread per column; left: (rows, r) f32, right: (rows, N) of E, rows ld apart, drop:
// dropout of element t * N + n. The block's sums go into dW with atomicAdd, through shared memory so that the
// adds run along dW's contiguous index.
template <typename E, int RC>
__device__ void columns_grad(float *smem, float *dw, rank_view v, const float *left, const E *right,
                             int64_t ld, int t0, int nt, int n0, int N, int r, float alpha, float p,
                             uint64_t key) {
    float *ws = smem, *ls = smem + COLS * (RC + 1);
    const int i = threadIdx.x, nn = min(COLS, N - n0);
    for (int j0 = 0; j0 < r; j0 += RC) {
        const int nj = min(RC, r - j0);
        float acc[RC] = {};
        for (int s0 = 0; s0 < nt; s0 += SUB_ROWS) {
            const int ns = min(SUB_ROWS, nt - s0);
            __syncthreads(); // the previous tiles are read
            stage_left<RC>(ls, left, t0 + s0, ns, j0, nj, r);
            __syncthreads();
            if (i >= nn) continue;
            for (int row = 0; row < ns; row++) {
                const int64_t e = (int64_t)(t0 + s0 + row) * N + n0 + i;
                const float x = dropped(to_f32(right[(int64_t)(t0 + s0 + row) * ld + n0 + i]), e, p, key);
#pragma unroll
                for (int j = 0; j < RC; j++)
                    acc[j] += ls[row * RC + j] * x;
            }
        }
        if (i < nn) {
#pragma unroll
            for (int j = 0; j < RC; j++)
                if (j < nj) ws[i * (RC + 1) + j] = alpha * acc[j];
        }
        __syncthreads();
        for_tile(v, nj, nn,
                 [&](int j, int n) { atomicAdd(&dw[v.at(j0 + j, n0 + n)], ws[n * (RC + 1) + j]); });
    }
}

static __device__ __forceinline__ rank_view a_view(int C) { return rank_view{C, 1}; }
static __device__ __forceinline__ rank_view b_view(int r) { return rank_view{1, r}; }

// out[t, n0 ..] += scaling * u[t, :] @ B[n0 .., :]^T for the pack of columns n0 .. n0 + N - 1 (< OC) of token
// t; out: rows ld apart, one 16-byte load and store when packed. Each element's sum runs over the ranks in
// order, as the CPU's.
template <typename E>
__device__ void up_pack(E *out, int64_t ld, const float *u, const float *B, int t, int n0, int OC, int r,
                        float scaling, bool packed) {
    using P = elementwise_pack<E>;
    const int nn = min(P::N, OC - n0);
    const int64_t e = (int64_t)t * ld + n0;
    float acc[P::N] = {};
    for (int j = 0; j < r; j++) {
        const float uj = u[(int64_t)t * r + j];
#pragma unroll
        for (int i = 0; i < P::N; i++)
            if (i < nn) acc[i] += uj * B[(int64_t)(n0 + i) * r + j];
    }
    float o[P::N];
    load_pack(o, out, e, nn, packed);
    if (packed) {
        P q;
#pragma unroll
        for (int i = 0; i < P::N; i++)
            q.v[i] = from_f32<E>(o[i] + scaling * acc[i]);
        *(P *)(out + e) = q;
        return;
    }
#pragma unroll
    for (int i = 0; i < P::N; i++)
        if (i < nn) out[e + i] = from_f32<E>(o[i] + scaling * acc[i]);
}

// branch blockIdx.y of g: u: (T, r) f32 = dropout(x: (T, C)) @ A^T for TT tokens (rows_down), then out +=
// scaling
// * u @ B^T for the same tokens, a pack of columns per thread and step
template <typename E, int RC>
__global__ void lora_forward_kernel(lora_group g, const E *x, int T, int C, int r, float scaling, float p,
                                    bool packed_x) {
    using P = elementwise_pack<E>;
    constexpr int TT = tokens_per_block<RC>();
    __shared__ float smem[SMALL_THREADS / 32 * TT * RC];
    const lora_branch &b = g.b[blockIdx.y];
    const int t0 = blockIdx.x * TT, nt = min(TT, T - t0), packs = (b.OC + P::N - 1) / P::N;
    rows_down<E, RC, TT>(smem, b.u, x, C, b.A, a_view(C), t0, T, C, r, 1.0f, p, lf_cuda_key_value(b.key, p),
                         packed_x);
    __syncthreads(); // the block's rows of u are written
    for (int i = threadIdx.x; i < nt * packs; i += blockDim.x)
        up_pack<E>((E *)b.out, b.ld, b.u, b.B, t0 + i / packs, i % packs * P::N, b.OC, r, scaling,
                   g.packed[blockIdx.y]);
}

// branch blockIdx.y of g: du: (T, r) f32 at du + y * T * r = scaling * dout @ B and dB += scaling * dout^T @
// u (NULL: not needed); dout: (T, OC) rows ld apart. Blocks [0, du_blocks): du of TT tokens (rows_down); the
// others: dB's sums for COLS columns over a group of group_rows tokens (the grid is sized for the widest
// branch).
template <typename E, int RC>
__global__ void lora_dout_kernel(lora_group g, float *du, int T, int r, float scaling, int du_blocks,
                                 int group_rows) {
    constexpr int TT = tokens_per_block<RC>();
    __shared__ float smem[SMEM_FLOATS];
    const lora_branch &b = g.b[blockIdx.y];
    const E *dout = (const E *)b.out;
    if ((int)blockIdx.x < du_blocks) {
        rows_down<E, RC, TT>(smem, du + (int64_t)blockIdx.y * T * r, dout, b.ld, b.B, b_view(r),
                             blockIdx.x * TT, T, b.OC, r, scaling, 0.0f, 0, g.packed[blockIdx.y]);
        return;
    }
    const int k = blockIdx.x - du_blocks, chunks = (b.OC + COLS - 1) / COLS, t0 = k / chunks * group_rows;
    if (b.dB == nullptr || t0 >= T) return;
    columns_grad<E, RC>(smem, b.dB, b_view(r), b.u, dout, b.ld, t0, min(group_rows, T - t0),
                        k % chunks * COLS, b.OC, r, scaling, 0.0f, 0);
}

// dx: (T, C) += sum_k dropout_k'(du_k @ A_k) over the branches (on grid row 0; NULL: not needed) and dA_y +=
// du_y^T @ dropout_y(x) for branch y = blockIdx.y (NULL: not needed); du: the branches' (T, r) f32, x: (T,
// C). A block: COLS columns of both over a group of group_rows tokens.
template <typename E, int RC>
__global__ void lora_du_kernel(lora_group g, E *dx, const float *du, const E *x, int T, int C, int r, float p,
                               int group_rows) {
    __shared__ float smem[SMEM_FLOATS];
    const int chunks = (C + COLS - 1) / COLS, t0 = blockIdx.x / chunks * group_rows;
    const int nt = min(group_rows, T - t0), n0 = blockIdx.x % chunks * COLS;
    if (dx != nullptr && blockIdx.y == 0)
        columns_up<E, RC, SUB_ROWS>(smem, dx, g, du, T, t0, nt, n0, C, r, p);
    const lora_branch &b = g.b[blockIdx.y];
    if (b.dA != nullptr)
        columns_grad<E, RC>(smem, b.dA, a_view(C), du + (int64_t)blockIdx.y * T * r, x, C, t0, nt, n0, C, r,
                            1.0f, p, lf_cuda_key_value(b.key, p));
}

// The backward in one launch, for x rows of few column chunks: blocks x < groups * chunks of grid row 0 each
// take COLS columns of x over a group of group_rows tokens: du of every branch for the group's tokens (the
// same sums as lora_dout_kernel's du blocks: rows_down with the block of LORA_THREADS), into their chunk's
// own du: (n, T, r) f32 at du + chunk * n * T * r, then dx (the branches summed; NULL: not needed) and dA of
// every branch (NULL: not needed) as lora_du_kernel; the blocks past them on grid row y: branch y's dB over
// a group, as lora_dout_kernel's. Each chunk recomputes du from dout: 4 chunks at most read dout 4 times.
template <typename E, int RC>
__global__ void lora_backward_kernel(lora_group g, E *dx, float *du, const E *x, int T, int C, int r,
                                     float scaling, float p, int group_rows) {
    constexpr int TT = tokens_per_block<RC>();
    __shared__ float smem[SMEM_FLOATS];
    const int chunks = (C + COLS - 1) / COLS, groups = (T + group_rows - 1) / group_rows;
    if ((int)blockIdx.x >= chunks * groups) {
        const lora_branch &b = g.b[blockIdx.y];
        const int k = blockIdx.x - chunks * groups, dB_chunks = (b.OC + COLS - 1) / COLS;
        const int t0 = k / dB_chunks * group_rows;
        if (b.dB == nullptr || t0 >= T) return;
        columns_grad<E, RC>(smem, b.dB, b_view(r), b.u, (const E *)b.out, b.ld, t0, min(group_rows, T - t0),
                            k % dB_chunks * COLS, b.OC, r, scaling, 0.0f, 0);
        return;
    }
    if (blockIdx.y != 0) return;
    const int t0 = blockIdx.x / chunks * group_rows, nt = min(group_rows, T - t0),
              n0 = blockIdx.x % chunks * COLS;
    float *mine = du + (int64_t)(blockIdx.x % chunks) * g.n * T * r;
    for (int k = 0; k < g.n; k++)
        for (int t = t0; t < t0 + nt; t += TT)
            rows_down<E, RC, TT>(smem, mine + (int64_t)k * T * r, (const E *)g.b[k].out, g.b[k].ld, g.b[k].B,
                                 b_view(r), t, t0 + nt, g.b[k].OC, r, scaling, 0.0f, 0, g.packed[k]);
    __syncthreads(); // the block's du rows are written
    if (dx != nullptr) columns_up<E, RC, SUB_ROWS>(smem, dx, g, mine, T, t0, nt, n0, C, r, p);
    for (int k = 0; k < g.n; k++)
        if (g.b[k].dA != nullptr)
            columns_grad<E, RC>(smem, g.b[k].dA, a_view(C), mine + (int64_t)k * T * r, x, C, t0, nt, n0, C, r,
                                1.0f, p, lf_cuda_key_value(g.b[k].key, p));
}

static unsigned chunks(int64_t n, int size) { return (unsigned)((n + size - 1) / size); }

// whether rows of `cols` elements ld apart at p run as 16-byte packs of n elements: p aligned, cols and ld
// multiples of n
static bool packs_fit(const void *p, int cols, int64_t ld, int n) {
    return (uintptr_t)p % 16 == 0 && cols % n == 0 && ld % n == 0;
}

// Calls f(std::integral_constant<int, RC>{}) with RC, the ranks the kernels take per step, for rank r
template <typename F> static int lora_dispatch_ranks(int r, F f) {
    if (r <= 4) return f(std::integral_constant<int, 4>{});
    return f(std::integral_constant<int, MAX_RANKS>{});
}

// the tokens of a group of the sums over tokens: a multiple of SUB_ROWS, at most MAX_GROUPS groups
static int group_rows(int T) {
    const int sub = (int)chunks(T, SUB_ROWS);
    return SUB_ROWS * (int)chunks(sub, min(sub, (int)MAX_GROUPS));
}

// 1 when the backward over x rows of C columns runs in one launch (lora_backward_kernel)
static bool one_launch(int C) { return chunks(C, COLS) <= ONE_LAUNCH_CHUNKS; }

size_t lora_scratch_bytes(int T, int C, int r, int n) {
    if (T <= 0 || C <= 0 || r <= 0 || n <= 0) return 0;
    const size_t du = (size_t)n * (size_t)T * (size_t)r * sizeof(float); // every branch's du
    return one_launch(C) ? chunks(C, COLS) * du : du;                    // once per chunk
}

// sizes the kernels can run (every grid fits gridDim.x) and a dropout probability in [0, 1)
static int lora_sizes_ok(int T, int C, int r, float p) {
    return T >= 0 && C >= 1 && r >= 1 && p >= 0.0f && p < 1.0f;
}

// g: the n branches of br with their pack flags for elements of `size` bytes; 0 or cudaErrorInvalidValue
static int group_of(const lora_branch *br, int n, size_t size, lora_group *g) {
    if (n < 1 || n > LORA_MAX_BRANCHES) return (int)cudaErrorInvalidValue;
    g->n = n;
    for (int k = 0; k < LORA_MAX_BRANCHES; k++) {
        g->b[k] = br[k < n ? k : 0];
        if (k >= n) continue;
        if (br[k].OC < 1 || br[k].ld < br[k].OC || !br[k].A || !br[k].B || !br[k].u || !br[k].out)
            return (int)cudaErrorInvalidValue;
        g->packed[k] = packs_fit(br[k].out, br[k].OC, br[k].ld, (int)(16 / size));
    }
    return 0;
}

int lora_group_forward_cuda(const lora_branch *br, int n, const void *x, int T, int C, int r, float scaling,
                            float p, lf_dtype dtype, cudaStream_t stream) {
    lora_group g;
    if (!lora_sizes_ok(T, C, r, p) || group_of(br, n, lf_cuda_dtype_size(dtype), &g) != 0)
        return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        return lora_dispatch_ranks(r, [&](auto ranks) {
            constexpr int RC = decltype(ranks)::value;
            const dim3 grid(chunks(T, tokens_per_block<RC>()), (unsigned)n);
            lora_forward_kernel<E, RC><<<grid, SMALL_THREADS, 0, stream>>>(
                g, (const E *)x, T, C, r, scaling, p, packs_fit(x, C, C, elementwise_pack<E>::N));
            return lf_launch_status();
        });
    });
}

int lora_group_backward_cuda(const lora_branch *br, int n, void *dx, void *scratch, const void *x, int T,
                             int C, int r, float scaling, float p, lf_dtype dtype, cudaStream_t stream) {
    lora_group g;
    if (!lora_sizes_ok(T, C, r, p) || group_of(br, n, lf_cuda_dtype_size(dtype), &g) != 0)
        return (int)cudaErrorInvalidValue;
    bool need_du = dx != nullptr;
    unsigned dB_chunks = 0;
    for (int k = 0; k < n; k++) {
        need_du = need_du || br[k].dA != nullptr;
        if (br[k].dB != nullptr) dB_chunks = std::max(dB_chunks, chunks(br[k].OC, COLS));
    }
    if (need_du && scratch == nullptr) return (int)cudaErrorInvalidValue;
    if (T == 0 || (!need_du && dB_chunks == 0)) return 0;
    float *du = (float *)scratch;
    const int rows = group_rows(T);
    const unsigned groups = chunks(T, rows);
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        return lora_dispatch_ranks(r, [&](auto ranks) {
            constexpr int RC = decltype(ranks)::value;
            if (need_du && one_launch(C)) {
                lora_backward_kernel<E, RC>
                    <<<dim3(chunks(C, COLS) * groups + dB_chunks * groups, (unsigned)n), LORA_THREADS, 0,
                       stream>>>(g, (E *)dx, du, (const E *)x, T, C, r, scaling, p, rows);
                return lf_launch_status();
            }
            const unsigned du_blocks = need_du ? chunks(T, tokens_per_block<RC>()) : 0;
            lora_dout_kernel<E, RC>
                <<<dim3(du_blocks + dB_chunks * groups, (unsigned)n), LORA_THREADS, 0, stream>>>(
                    g, du, T, r, scaling, (int)du_blocks, rows);
            const int status = lf_launch_status();
            if (status != 0 || !need_du) return status;
            lora_du_kernel<E, RC><<<dim3(chunks(C, COLS) * groups, (unsigned)n), LORA_THREADS, 0, stream>>>(
                g, (E *)dx, du, (const E *)x, T, C, r, p, rows);
            return lf_launch_status();
        });
    });
}

int lora_forward_cuda(void *out, float *u, const void *x, const float *A, const float *B, int T, int C,
                      int OC, int r, float scaling, float p, lf_cuda_key key, lf_dtype dtype,
                      cudaStream_t stream) {
    const lora_branch b = {A, B, u, out, OC, OC, key, NULL, NULL};
    return lora_group_forward_cuda(&b, 1, x, T, C, r, scaling, p, dtype, stream);
}

int lora_backward_cuda(void *dx, float *dA, float *dB, void *scratch, const void *dout, const void *x,
                       const float *u, const float *A, const float *B, int T, int C, int OC, int r,
                       float scaling, float p, lf_cuda_key key, lf_dtype dtype, cudaStream_t stream) {
    const lora_branch b = {A, B, (float *)u, (void *)dout, OC, OC, key, dA, dB};
    return lora_group_backward_cuda(&b, 1, dx, scratch, x, T, C, r, scaling, p, dtype, stream);
}

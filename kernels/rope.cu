// RoPE tables, forward and backward: the CUDA twin of csrc/ops/rope.c.
#include "rope.cuh"

// ROPE_MAX_HALF: D/2 of the tables, head sizes up to 512
enum { ROPE_THREADS = 256, ROPE_MAX_BLOCKS = 65536, ROPE_MAX_HALF = 256 };

// blocks of a grid-stride loop over n >= 1 items
static unsigned rope_blocks(int64_t n) {
    int64_t blocks = (n + ROPE_THREADS - 1) / ROPE_THREADS;
    return (unsigned)(blocks < ROPE_MAX_BLOCKS ? blocks : ROPE_MAX_BLOCKS);
}

// theta^(-2i/D) for i < D/2, computed on the host by the CPU op's expression (glibc's powf), so the angles
// equal the CPU's: CUDA's powf may be an ulp off, and an ulp of inv_freq times a position in the thousands
// moves an angle by 1e-4
struct rope_frequencies {
    float inv_freq[ROPE_MAX_HALF];
};

// cos, sin: (T, D/2), pos: (T,); one thread per (t, i). cos and sin of the f32 angle are taken in double
// and rounded: that is glibc's cosf and sinf (within 0.56 ulp) but for values close to a rounding tie
__global__ void rope_tables_kernel(float *cos_table, float *sin_table, const int *pos, int T, int half,
                                   const __grid_constant__ rope_frequencies frequencies) {
    int64_t n = (int64_t)T * half;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(k / half), i = (int)(k % half);
        float angle = (float)pos[t] * frequencies.inv_freq[i];
        cos_table[k] = (float)cos((double)angle);
        sin_table[k] = (float)sin((double)angle);
    }
}

int rope_tables_cuda(float *cos, float *sin, const int *pos, int T, int D, float theta, cudaStream_t stream) {
    if (T < 0 || D < 0 || D % 2 != 0 || D / 2 > ROPE_MAX_HALF) return (int)cudaErrorInvalidValue;
    if (T == 0 || D == 0) return 0;
    if (!cos || !sin || !pos) return (int)cudaErrorInvalidValue;
    int half = D / 2;
    rope_frequencies frequencies = {};
    for (int i = 0; i < half; i++)
        frequencies.inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)D);
    rope_tables_kernel<<<rope_blocks((int64_t)T * half), ROPE_THREADS, 0, stream>>>(cos, sin, pos, T, half,
                                                                                    frequencies);
    return lf_launch_status();
}

// q: (T, NQ, D) rows ldq apart and k: (T, NK, D) rows ldk apart in place (k NULL when NK == 0), cos, sin:
// (T, D/2); one thread per pair
// (i, i + D/2) of one head of one token, the NQ + NK heads of a token in a row, q's first. direction +1
// rotates by the angle (forward), -1 by its negative (backward).
template <typename T>
__global__ void rope_rotate_kernel(T *q, T *k, int64_t ldq, int64_t ldk, const float *cos_table,
                                   const float *sin_table, int T_tokens, int NQ, int NK, int D,
                                   float direction) {
    int half = D / 2, H = NQ + NK;
    int64_t n = (int64_t)T_tokens * H * half;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (int64_t)gridDim.x * blockDim.x) {
        int64_t head = j / half; // t * H + h
        int i = (int)(j % half);
        int64_t t = head / H;
        int h = (int)(head % H);
        T *v = h < NQ ? q + t * ldq + (int64_t)h * D : k + t * ldk + (int64_t)(h - NQ) * D;
        float c = cos_table[t * half + i], s = direction * sin_table[t * half + i];
        float a = to_f32(v[i]), b = to_f32(v[i + half]);
        v[i] = from_f32<T>(a * c - b * s);
        v[i + half] = from_f32<T>(b * c + a * s);
    }
}

static int rope_rotate_launch(void *q, void *k, int64_t ldq, int64_t ldk, const float *cos, const float *sin,
                              int T, int NQ, int NK, int D, float direction, lf_dtype dtype,
                              cudaStream_t stream) {
    if (T < 0 || NQ < 0 || NK < 0 || D < 0 || D % 2 != 0 || ldq < (int64_t)NQ * D || ldk < (int64_t)NK * D)
        return (int)cudaErrorInvalidValue;
    if (T == 0 || NQ + NK == 0 || D == 0) return 0;
    if ((NQ > 0 && !q) || (NK > 0 && !k) || !cos || !sin) return (int)cudaErrorInvalidValue;
    return lf_dispatch_dtype(dtype, [&](auto t) {
        using E = decltype(t);
        rope_rotate_kernel<E><<<rope_blocks((int64_t)T * (NQ + NK) * (D / 2)), ROPE_THREADS, 0, stream>>>(
            (E *)q, (E *)k, ldq, ldk, cos, sin, T, NQ, NK, D, direction);
        return lf_launch_status();
    });
}

int rope_forward_cuda(void *x, const float *cos, const float *sin, int T, int H, int D, lf_dtype dtype,
                      cudaStream_t stream) {
    return rope_rotate_launch(x, NULL, (int64_t)H * D, 0, cos, sin, T, H, 0, D, 1.0f, dtype, stream);
}

int rope_backward_cuda(void *dx, const float *cos, const float *sin, int T, int H, int D, lf_dtype dtype,
                       cudaStream_t stream) {
    return rope_rotate_launch(dx, NULL, (int64_t)H * D, 0, cos, sin, T, H, 0, D, -1.0f, dtype, stream);
}

int rope_qk_forward_cuda(void *q, void *k, int64_t ldq, int64_t ldk, const float *cos, const float *sin,
                         int T, int NH, int NKV, int D, lf_dtype dtype, cudaStream_t stream) {
    return rope_rotate_launch(q, k, ldq, ldk, cos, sin, T, NH, NKV, D, 1.0f, dtype, stream);
}

int rope_qk_backward_cuda(void *dq, void *dk, int64_t ldq, int64_t ldk, const float *cos, const float *sin,
                          int T, int NH, int NKV, int D, lf_dtype dtype, cudaStream_t stream) {
    return rope_rotate_launch(dq, dk, ldq, ldk, cos, sin, T, NH, NKV, D, -1.0f, dtype, stream);
}

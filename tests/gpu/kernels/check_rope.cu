// kernels/rope.cu against csrc/ops/rope.c
#include "kernel_check.cuh"
#include "rope.cuh"

extern "C" {
#include "ops/rope.h"
}

struct rope_shape {
    int T, H, D;
    float theta;
};

// one token and one pair; Llama's 32 heads of 128; Mistral's theta; odd counts of tokens and heads
static const rope_shape rope_shapes[] = {{1, 1, 2, 10000.0f},
                                         {37, 8, 64, 10000.0f},
                                         {300, 32, 128, 10000.0f},
                                         {5, 3, 96, 1000000.0f},
                                         {513, 7, 80, 10000.0f}};

// positions of packed sequences: 0, 1, ..., restarting every `restart` tokens, plus an offset
static std::vector<int> packed_positions(int T, int restart, int offset) {
    std::vector<int> pos(T);
    for (int t = 0; t < T; t++)
        pos[t] = offset + t % restart;
    return pos;
}

static void check_rope_tables(const std::vector<int> &pos, int D, float theta, const char *label) {
    const int T = (int)pos.size(), half = D / 2;
    const int64_t n = (int64_t)T * half;
    char what[160];
    std::vector<float> want_cos((size_t)n), want_sin((size_t)n);
    rope_tables(want_cos.data(), want_sin.data(), pos.data(), T, D, theta);
    int *d_pos = NULL;
    CHECK_CUDA(cudaMalloc(&d_pos, pos.size() * sizeof(int)));
    CHECK_CUDA(cudaMemcpy(d_pos, pos.data(), pos.size() * sizeof(int), cudaMemcpyHostToDevice));
    float *d_cos = (float *)device_zeros(n, LF_F32), *d_sin = (float *)device_zeros(n, LF_F32);
    CHECK_CUDA(rope_tables_cuda(d_cos, d_sin, d_pos, T, D, theta, 0));
    snprintf(what, sizeof what, "rope_tables cos T=%d D=%d theta=%g %s", T, D, theta, label);
    check_close(what, LF_F32, from_device(d_cos, n, LF_F32), want_cos, tolerance(LF_F32));
    snprintf(what, sizeof what, "rope_tables sin T=%d D=%d theta=%g %s", T, D, theta, label);
    check_close(what, LF_F32, from_device(d_sin, n, LF_F32), want_sin, tolerance(LF_F32));
    for (void *p : {(void *)d_pos, (void *)d_cos, (void *)d_sin})
        CHECK_CUDA(cudaFree(p));
}

// forward and backward in place, both from the CPU's tables
static void check_rope_rotation(lf_dtype dt, rope_shape shape, uint64_t seed) {
    const int T = shape.T, H = shape.H, D = shape.D, half = D / 2;
    const int64_t n = (int64_t)T * H * D;
    char what[160];
    std::vector<int> pos = packed_positions(T, 200, 3);
    std::vector<float> cos((size_t)T * half), sin((size_t)T * half);
    rope_tables(cos.data(), sin.data(), pos.data(), T, D, shape.theta);
    std::vector<float> x = rounded(random_vector(n, -2, 2, seed), dt), want_forward = x;
    std::vector<float> dx = rounded(random_vector(n, -2, 2, seed + 1), dt), want_backward = dx;
    rope_forward(want_forward.data(), cos.data(), sin.data(), T, H, D);
    rope_backward(want_backward.data(), cos.data(), sin.data(), T, H, D);
    float *d_cos = (float *)to_device(cos, LF_F32), *d_sin = (float *)to_device(sin, LF_F32);
    void *d_x = to_device(x, dt), *d_dx = to_device(dx, dt);
    CHECK_CUDA(rope_forward_cuda(d_x, d_cos, d_sin, T, H, D, dt, 0));
    snprintf(what, sizeof what, "rope_forward T=%d H=%d D=%d", T, H, D);
    check_close(what, dt, from_device(d_x, n, dt), want_forward, tolerance(dt));
    CHECK_CUDA(rope_backward_cuda(d_dx, d_cos, d_sin, T, H, D, dt, 0));
    snprintf(what, sizeof what, "rope_backward T=%d H=%d D=%d", T, H, D);
    check_close(what, dt, from_device(d_dx, n, dt), want_backward, tolerance(dt));
    for (void *p : {(void *)d_cos, (void *)d_sin, d_x, d_dx})
        CHECK_CUDA(cudaFree(p));
}

// q: (T, H, D) and k: (T, NKV, D) rotated in one launch (backward: rotated back), against the CPU op on each;
// fused: q and k the first columns of one (T, (H + 2 NKV) D + 3) matrix (a fused q|k|v product's rows), the
// other columns left as they were
static void check_rope_qk(lf_dtype dt, rope_shape shape, int NKV, int backward, uint64_t seed,
                          int fused = 0) {
    const int T = shape.T, H = shape.H, D = shape.D, half = D / 2;
    const int64_t nq = (int64_t)T * H * D, nk = (int64_t)T * NKV * D;
    char what[160], name[200];
    std::vector<int> pos = packed_positions(T, 200, 3);
    std::vector<float> cos((size_t)T * half), sin((size_t)T * half);
    rope_tables(cos.data(), sin.data(), pos.data(), T, D, shape.theta);
    std::vector<float> q = rounded(random_vector(nq, -2, 2, seed), dt), want_q = q;
    std::vector<float> k = rounded(random_vector(nk, -2, 2, seed + 1), dt), want_k = k;
    auto cpu = backward ? rope_backward : rope_forward;
    cpu(want_q.data(), cos.data(), sin.data(), T, H, D);
    cpu(want_k.data(), cos.data(), sin.data(), T, NKV, D);
    float *d_cos = (float *)to_device(cos, LF_F32), *d_sin = (float *)to_device(sin, LF_F32);
    auto launcher = backward ? rope_qk_backward_cuda : rope_qk_forward_cuda;
    snprintf(what, sizeof what, "rope_qk_%s T=%d NH=%d NKV=%d D=%d%s", backward ? "backward" : "forward", T,
             H, NKV, D, fused ? " fused q|k|v rows" : "");
    if (fused) {
        const int64_t ld = (int64_t)(H + 2 * NKV) * D + 3;
        std::vector<float> wide = rounded(random_vector(T * ld, -2, 2, seed + 2), dt), want = wide;
        for (int t = 0; t < T; t++)
            for (int64_t c = 0; c < (int64_t)(H + NKV) * D; c++) {
                const bool is_q = c < (int64_t)H * D;
                const float *from = is_q ? &q[t * (int64_t)H * D + c] : &k[t * (int64_t)NKV * D + c - H * D];
                const float *got =
                    is_q ? &want_q[t * (int64_t)H * D + c] : &want_k[t * (int64_t)NKV * D + c - H * D];
                wide[t * ld + c] = *from, want[t * ld + c] = *got;
            }
        void *d_w = to_device(wide, dt);
        CHECK_CUDA(launcher(d_w, (char *)d_w + (size_t)H * D * lf_cuda_dtype_size(dt), ld, ld, d_cos, d_sin,
                            T, H, NKV, D, dt, 0));
        check_close(what, dt, from_device(d_w, T * ld, dt), want, tolerance(dt));
        for (void *p : {(void *)d_cos, (void *)d_sin, d_w})
            CHECK_CUDA(cudaFree(p));
        return;
    }
    void *d_q = to_device(q, dt), *d_k = to_device(k, dt);
    CHECK_CUDA(launcher(d_q, d_k, (int64_t)H * D, (int64_t)NKV * D, d_cos, d_sin, T, H, NKV, D, dt, 0));
    snprintf(name, sizeof name, "%s: q", what);
    check_close(name, dt, from_device(d_q, nq, dt), want_q, tolerance(dt));
    snprintf(name, sizeof name, "%s: k", what);
    check_close(name, dt, from_device(d_k, nk, dt), want_k, tolerance(dt));
    for (void *p : {(void *)d_cos, (void *)d_sin, d_q, d_k})
        CHECK_CUDA(cudaFree(p));
}

// a GQA count of key/value heads for H query heads: the largest proper divisor of H (H itself when 1)
static int gqa_heads(int H) {
    for (int d = H / 2; d > 1; d--)
        if (H % d == 0) return d;
    return 1;
}

int main(void) {
    for (rope_shape shape : rope_shapes)
        check_rope_tables(packed_positions(shape.T, 200, 0), shape.D, shape.theta, "packed from 0");
    // long contexts: positions up to 32767, where an ulp of the inverse frequency shows in the angle
    std::vector<float> draw = random_vector(1000, 0, 32768, 77);
    std::vector<int> far(draw.size());
    for (size_t t = 0; t < draw.size(); t++)
        far[t] = (int)draw[t];
    check_rope_tables(far, 128, 10000.0f, "random up to 32767");
    check_rope_tables(far, 128, 1000000.0f, "random up to 32767");
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 700;
        for (rope_shape shape : rope_shapes) {
            check_rope_rotation(dt, shape, seed += 10);
            for (int backward = 0; backward < 2; backward++) {
                check_rope_qk(dt, shape, shape.H, backward, seed += 10);            // NKV == NH
                check_rope_qk(dt, shape, gqa_heads(shape.H), backward, seed += 10); // GQA (but for H == 1)
                check_rope_qk(dt, shape, gqa_heads(shape.H), backward, seed += 10, 1);
            }
        }
    }
    check_equal("rope_forward rejects an odd D",
                {(float)rope_forward_cuda(NULL, NULL, NULL, 4, 2, 7, LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    float unread[1]; // validation rejects the call before any launch reads a pointer
    check_equal("rope_qk_forward rejects a NULL k with NKV > 0",
                {(float)rope_qk_forward_cuda(unread, NULL, 16, 8, unread, unread, 4, 2, 1, 8, LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    return check_summary("check_rope");
}

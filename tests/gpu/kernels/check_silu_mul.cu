// kernels/silu_mul.cu against csrc/ops/silu_mul.c
#include "kernel_check.cuh"
#include "silu_mul.cuh"

extern "C" {
#include "ops/silu_mul.h"
}

// N: one element, odd, Llama's intermediate size times a few tokens plus a remainder, past one grid
static const int64_t silu_mul_sizes[] = {1, 1001, 14336 * 3 + 5, 16777216 + 4097};

static void check_silu_mul(lf_dtype dt, int64_t N, uint64_t seed) {
    char what[96];
    std::vector<float> gate = rounded(random_vector(N, -8, 8, seed), dt);
    std::vector<float> up = rounded(random_vector(N, -2, 2, seed + 1), dt);
    std::vector<float> dout = rounded(random_vector(N, -1, 1, seed + 2), dt);
    std::vector<float> dgate = rounded(random_vector(N, -1, 1, seed + 3), dt);
    std::vector<float> dup = rounded(random_vector(N, -1, 1, seed + 4), dt);
    std::vector<float> want_out((size_t)N), want_dgate = dgate, want_dup = dup;
    silu_mul_forward(want_out.data(), gate.data(), up.data(), (long)N);
    silu_mul_backward(want_dgate.data(), want_dup.data(), dout.data(), gate.data(), up.data(), (long)N);

    void *d_gate = to_device(gate, dt), *d_up = to_device(up, dt), *d_out = device_zeros(N, dt);
    void *d_dout = to_device(dout, dt), *d_dgate = to_device(dgate, dt), *d_dup = to_device(dup, dt);
    CHECK_CUDA(silu_mul_forward_cuda(d_out, d_gate, d_up, 1, N, N, dt, 0));
    snprintf(what, sizeof what, "silu_mul_forward N=%lld", (long long)N);
    check_close(what, dt, from_device(d_out, N, dt), want_out, tolerance(dt));
    // from the second element: pointers off 16-byte alignment, every element one by one
    const size_t E = lf_cuda_dtype_size(dt);
    CHECK_CUDA(silu_mul_forward_cuda((char *)d_out + E, (char *)d_gate + E, (char *)d_up + E, 1, N - 1, N - 1,
                                     dt, 0));
    snprintf(what, sizeof what, "silu_mul_forward unaligned N=%lld", (long long)N);
    check_close(what, dt, from_device(d_out, N, dt), want_out, tolerance(dt));
    for (int accumulate = 1; accumulate >= 0; accumulate--) { // 0: written, the NaN held never read
        if (!accumulate) {
            std::fill(want_dgate.begin(), want_dgate.end(), 0.0f);
            std::fill(want_dup.begin(), want_dup.end(), 0.0f);
            silu_mul_backward(want_dgate.data(), want_dup.data(), dout.data(), gate.data(), up.data(),
                              (long)N);
            CHECK_CUDA(cudaFree(d_dgate));
            CHECK_CUDA(cudaFree(d_dup));
            d_dgate = device_nans(N, dt), d_dup = device_nans(N, dt);
        }
        CHECK_CUDA(silu_mul_backward_cuda(d_dgate, d_dup, d_dout, d_gate, d_up, 1, N, N, accumulate, dt, 0));
        const char *mode = accumulate ? "" : " written";
        snprintf(what, sizeof what, "silu_mul_backward%s dgate N=%lld", mode, (long long)N);
        check_close(what, dt, from_device(d_dgate, N, dt), want_dgate, tolerance(dt));
        snprintf(what, sizeof what, "silu_mul_backward%s dup N=%lld", mode, (long long)N);
        check_close(what, dt, from_device(d_dup, N, dt), want_dup, tolerance(dt));
    }
    for (void *p : {d_gate, d_up, d_out, d_dout, d_dgate, d_dup})
        CHECK_CUDA(cudaFree(p));
}

// gate and up the column ranges [0, I) and [I + pad, 2 I + pad) of one (T, 2 I + 2 pad) matrix, as a fused
// gate|up product writes them (and their gradients likewise), against the CPU op on the columns; the columns
// between and after left as they were
static void check_silu_mul_rows(lf_dtype dt, int T, int I, int pad, uint64_t seed) {
    const int64_t ld = 2 * (int64_t)I + 2 * pad, n = (int64_t)T * I;
    char what[128];
    std::vector<float> wide = rounded(random_vector(T * ld, -4, 4, seed), dt);
    std::vector<float> dwide = rounded(random_vector(T * ld, -1, 1, seed + 1), dt);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 2), dt);
    std::vector<float> gate((size_t)n), up((size_t)n), dgate((size_t)n), dup((size_t)n), want_out((size_t)n);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < I; c++) {
            gate[(size_t)t * I + c] = wide[t * ld + c], up[(size_t)t * I + c] = wide[t * ld + I + pad + c];
            dgate[(size_t)t * I + c] = dwide[t * ld + c],
                                  dup[(size_t)t * I + c] = dwide[t * ld + I + pad + c];
        }
    silu_mul_forward(want_out.data(), gate.data(), up.data(), (long)n);
    silu_mul_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), (long)n);
    std::vector<float> want_dwide = dwide;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < I; c++)
            want_dwide[t * ld + c] = dgate[(size_t)t * I + c],
                                want_dwide[t * ld + I + pad + c] = dup[(size_t)t * I + c];
    const size_t E = lf_cuda_dtype_size(dt), up_at = (size_t)(I + pad) * E;
    void *d_w = to_device(wide, dt), *d_dw = to_device(dwide, dt), *d_dout = to_device(dout, dt);
    void *d_out = device_nans(n, dt);
    CHECK_CUDA(silu_mul_forward_cuda(d_out, d_w, (char *)d_w + up_at, T, I, ld, dt, 0));
    snprintf(what, sizeof what, "silu_mul_forward gate|up rows T=%d I=%d ld=%lld", T, I, (long long)ld);
    check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
    CHECK_CUDA(silu_mul_backward_cuda(d_dw, (char *)d_dw + up_at, d_dout, d_w, (char *)d_w + up_at, T, I, ld,
                                      1, dt, 0));
    snprintf(what, sizeof what, "silu_mul_backward gate|up rows T=%d I=%d ld=%lld: dgate|dup", T, I,
             (long long)ld);
    check_close(what, dt, from_device(d_dw, T * ld, dt), want_dwide, tolerance(dt));
    for (void *p : {d_w, d_dw, d_dout, d_out})
        CHECK_CUDA(cudaFree(p));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 400;
        for (int64_t N : silu_mul_sizes) {
            if (emulated() && N > (1 << 20) && dt != LF_F32) continue; // past one grid: in f32 only
            check_silu_mul(dt, N, seed += 10);
        }
        check_silu_mul_rows(dt, 9, 64, 0, seed += 10); // rows of whole packs
        check_silu_mul_rows(dt, 5, 37, 3, seed += 10); // one by one
    }
    check_equal("silu_mul_forward rejects rows < 0 and rows shorter than cols",
                {(float)silu_mul_forward_cuda(NULL, NULL, NULL, -1, 4, 4, LF_F32, 0),
                 (float)silu_mul_forward_cuda(NULL, NULL, NULL, 2, 4, 3, LF_F32, 0)},
                {(float)cudaErrorInvalidValue, (float)cudaErrorInvalidValue});
    return check_summary("check_silu_mul");
}

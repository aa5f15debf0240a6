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
    CHECK_CUDA(silu_mul_forward_cuda(d_out, d_gate, d_up, N, dt, 0));
    snprintf(what, sizeof what, "silu_mul_forward N=%lld", (long long)N);
    check_close(what, dt, from_device(d_out, N, dt), want_out, tolerance(dt));
    // from the second element: pointers off 16-byte alignment, every element one by one
    const size_t E = lf_cuda_dtype_size(dt);
    CHECK_CUDA(silu_mul_forward_cuda((char *)d_out + E, (char *)d_gate + E, (char *)d_up + E, N - 1, dt, 0));
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
        CHECK_CUDA(silu_mul_backward_cuda(d_dgate, d_dup, d_dout, d_gate, d_up, N, accumulate, dt, 0));
        const char *mode = accumulate ? "" : " written";
        snprintf(what, sizeof what, "silu_mul_backward%s dgate N=%lld", mode, (long long)N);
        check_close(what, dt, from_device(d_dgate, N, dt), want_dgate, tolerance(dt));
        snprintf(what, sizeof what, "silu_mul_backward%s dup N=%lld", mode, (long long)N);
        check_close(what, dt, from_device(d_dup, N, dt), want_dup, tolerance(dt));
    }
    for (void *p : {d_gate, d_up, d_out, d_dout, d_dgate, d_dup})
        CHECK_CUDA(cudaFree(p));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 400;
        for (int64_t N : silu_mul_sizes) {
            if (emulated() && N > (1 << 20) && dt != LF_F32) continue; // past one grid: in f32 only
            check_silu_mul(dt, N, seed += 10);
        }
    }
    check_equal("silu_mul_forward rejects N < 0",
                {(float)silu_mul_forward_cuda(NULL, NULL, NULL, -1, LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    return check_summary("check_silu_mul");
}

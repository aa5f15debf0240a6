// kernels/activation.cu against csrc/ops/activation.c
#include "activation.cuh"
#include "kernel_check.cuh"

extern "C" {
#include "ops/activation.h"
}

// n: one element, an odd count, a count off multiples of the block size, more than the grid covers at once
static const int64_t activation_sizes[] = {1, 37, 100003, 16777216 + 2049};

static void check_gelu(lf_dtype dt, int64_t n, uint64_t seed) {
    char what[96];
    // [-6, 6] reaches the tails, where the CPU's erf is clamped to +-1
    std::vector<float> inp = rounded(random_vector(n, -6, 6, seed), dt);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 1), dt);
    std::vector<float> dinp = rounded(random_vector(n, -1, 1, seed + 2), dt);
    std::vector<float> want_out((size_t)n), want_dinp = dinp;
    gelu_forward(want_out.data(), inp.data(), n);
    gelu_backward(want_dinp.data(), inp.data(), dout.data(), n, 1);
    void *d_inp = to_device(inp, dt), *d_out = device_zeros(n, dt), *d_dout = to_device(dout, dt);
    void *d_dinp = to_device(dinp, dt);
    CHECK_CUDA(gelu_forward_cuda(d_out, d_inp, n, dt, 0));
    snprintf(what, sizeof what, "gelu_forward n=%lld", (long long)n);
    check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
    CHECK_CUDA(gelu_backward_cuda(d_dinp, d_inp, d_dout, n, 1, dt, 0));
    snprintf(what, sizeof what, "gelu_backward n=%lld", (long long)n);
    check_close(what, dt, from_device(d_dinp, n, dt), want_dinp, tolerance(dt));
    // accumulate 0: written, the NaN dinp holds never read
    std::vector<float> want_written((size_t)n, 0.0f);
    gelu_backward(want_written.data(), inp.data(), dout.data(), n, 0);
    void *d_written = device_nans(n, dt);
    CHECK_CUDA(gelu_backward_cuda(d_written, d_inp, d_dout, n, 0, dt, 0));
    snprintf(what, sizeof what, "gelu_backward written n=%lld", (long long)n);
    check_close(what, dt, from_device(d_written, n, dt), want_written, tolerance(dt));
    for (void *p : {d_inp, d_out, d_dout, d_dinp, d_written})
        CHECK_CUDA(cudaFree(p));
}

static void check_tanh(lf_dtype dt, int64_t n, uint64_t seed) {
    char what[96];
    std::vector<float> inp = rounded(random_vector(n, -4, 4, seed), dt);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 1), dt);
    std::vector<float> dinp = rounded(random_vector(n, -1, 1, seed + 2), dt);
    std::vector<float> want_out((size_t)n);
    tanh_forward(want_out.data(), inp.data(), n);
    void *d_inp = to_device(inp, dt), *d_out = device_zeros(n, dt);
    CHECK_CUDA(tanh_forward_cuda(d_out, d_inp, n, dt, 0));
    snprintf(what, sizeof what, "tanh_forward n=%lld", (long long)n);
    check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
    CHECK_CUDA(tanh_forward_cuda(d_inp, d_inp, n, dt, 0)); // out == inp
    snprintf(what, sizeof what, "tanh_forward in place n=%lld", (long long)n);
    check_close(what, dt, from_device(d_inp, n, dt), want_out, tolerance(dt));

    // backward from the forward output as the GPU holds it (rounded to dtype)
    std::vector<float> out = rounded(want_out, dt), want_dinp = dinp;
    tanh_backward(want_dinp.data(), out.data(), dout.data(), n);
    void *d_fwd = to_device(out, dt), *d_dout = to_device(dout, dt), *d_dinp = to_device(dinp, dt);
    CHECK_CUDA(tanh_backward_cuda(d_dinp, d_fwd, d_dout, n, dt, 0));
    snprintf(what, sizeof what, "tanh_backward n=%lld", (long long)n);
    check_close(what, dt, from_device(d_dinp, n, dt), want_dinp, tolerance(dt));
    for (void *p : {d_inp, d_out, d_fwd, d_dout, d_dinp})
        CHECK_CUDA(cudaFree(p));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 300;
        for (int64_t n : activation_sizes) {
            if (emulated() && n > (1 << 20) && dt != LF_F32) continue; // past one grid: in f32 only
            check_gelu(dt, n, seed += 10);
            check_tanh(dt, n, seed += 10);
        }
    }
    CHECK_CUDA(gelu_forward_cuda(NULL, NULL, 0, LF_F32, 0)); // n = 0 launches nothing
    check_equal("gelu_forward rejects an unknown dtype", {(float)gelu_forward_cuda(NULL, NULL, 4, LF_I32, 0)},
                {(float)cudaErrorInvalidValue});
    return check_summary("check_activation");
}

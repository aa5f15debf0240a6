// kernels/dropout.cu against csrc/ops/dropout.c: the same elements dropped (exactly), the same values
#include "dropout.cuh"
#include "kernel_check.cuh"

extern "C" {
#include "ops/dropout.h"
}

// 1 where x is non-zero: the keep mask of an output whose input had no zeros
static std::vector<float> nonzero_mask(const std::vector<float> &x) {
    std::vector<float> mask(x.size());
    for (size_t i = 0; i < x.size(); i++)
        mask[i] = x[i] != 0.0f;
    return mask;
}

// f32 results must equal the CPU's bit for bit where the op is one product; others are compared closely
static void check_dropout_result(const char *what, lf_dtype dt, const std::vector<float> &got,
                                 const std::vector<float> &want, int exact) {
    if (dt == LF_F32 && exact)
        check_equal(what, got, want);
    else
        check_close(what, dt, got, want, tolerance(dt));
}

static void check_dropout(lf_dtype dt, int64_t n, float p, check_key key, uint64_t seed) {
    char what[128];
    // inputs in [0.5, 1.5] with random signs: never 0, so a zero output marks a dropped element
    std::vector<float> in = random_vector(n, 0.5f, 1.5f, seed), sign = random_vector(n, -1, 1, seed + 1);
    for (int64_t i = 0; i < n; i++)
        in[i] = sign[i] < 0 ? -in[i] : in[i];
    in = rounded(in, dt);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 2), dt);
    std::vector<float> din = rounded(random_vector(n, -1, 1, seed + 3), dt);
    std::vector<float> want_out((size_t)n), want_din = din, want_inplace = dout;
    dropout_forward(want_out.data(), in.data(), n, p, key.cpu);
    dropout_backward(want_din.data(), dout.data(), n, p, key.cpu);
    dropout_backward_inplace(want_inplace.data(), n, p, key.cpu);

    void *d_in = to_device(in, dt), *d_out = device_zeros(n, dt);
    CHECK_CUDA(dropout_forward_cuda(d_out, d_in, n, p, key.gpu, dt, 0));
    std::vector<float> out = from_device(d_out, n, dt);
    snprintf(what, sizeof what, "dropout_forward n=%lld p=%g%s", (long long)n, p, key.label);
    check_dropout_result(what, dt, out, want_out, 1);
    snprintf(what, sizeof what, "dropout_forward mask n=%lld p=%g%s", (long long)n, p, key.label);
    check_equal(what, nonzero_mask(out), nonzero_mask(want_out));
    if (n >= 1000000) {
        double rate = 0.0;
        for (float k : nonzero_mask(out))
            rate += k;
        rate /= (double)n;
        double expected = p > 0.0f ? 1.0 - p : 1.0, sigma = sqrt(expected * (1.0 - expected) / (double)n);
        snprintf(what, sizeof what, "dropout_forward keep rate n=%lld p=%g%s (expected %g)", (long long)n, p,
                 key.label, expected);
        check_true(what, fabs(rate - expected) <= 6.0 * sigma + 1e-12, rate);
    }
    CHECK_CUDA(dropout_forward_cuda(d_in, d_in, n, p, key.gpu, dt, 0)); // out == in
    snprintf(what, sizeof what, "dropout_forward in place n=%lld p=%g%s", (long long)n, p, key.label);
    check_dropout_result(what, dt, from_device(d_in, n, dt), want_out, 1);

    void *d_dout = to_device(dout, dt), *d_din = to_device(din, dt);
    CHECK_CUDA(dropout_backward_cuda(d_din, d_dout, n, p, key.gpu, dt, 0));
    snprintf(what, sizeof what, "dropout_backward n=%lld p=%g%s", (long long)n, p, key.label);
    check_dropout_result(what, dt, from_device(d_din, n, dt), want_din, 0);
    CHECK_CUDA(dropout_backward_inplace_cuda(d_dout, n, p, key.gpu, dt, 0));
    snprintf(what, sizeof what, "dropout_backward_inplace n=%lld p=%g%s", (long long)n, p, key.label);
    check_dropout_result(what, dt, from_device(d_dout, n, dt), want_inplace, 1);
    for (void *p_ : {d_in, d_out, d_dout, d_din})
        CHECK_CUDA(cudaFree(p_));
}

int main(void) {
    // one element, odd, off the block size, past one grid (16777216 threads); p 0 (identity), < 0 (identity
    // as on the CPU), LoRA's 0.05 and 0.1, 0.5
    const int64_t sizes[] = {1, 1001, 1 << 20, 16777216 + 333};
    const float rates[] = {0.0f, -0.5f, 0.05f, 0.1f, 0.5f};
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 500, stream = 0;
        for (int64_t n : sizes)
            for (float p : rates) {
                if (n > (1 << 20) && p != 0.1f) continue;                  // the largest size once
                if (emulated() && n > (1 << 20) && dt != LF_F32) continue; // and in f32 only
                check_dropout(dt, n, p, check_key_of(FIXED_KEY, 42, stream++), seed += 10);
            }
        // the key read on the device from a step seed (the device model's), and not read at all without
        // dropout
        check_dropout(dt, 1001, 0.1f, check_key_of(DEVICE_KEY, 43, 7), seed += 10);
        check_dropout(dt, 1 << 20, 0.5f, check_key_of(DEVICE_KEY, 44, 1 << 24), seed += 10);
        for (float p : {0.0f, -0.5f})
            check_dropout(dt, 1001, p, check_key_of(UNREADABLE_KEY, 45, 7), seed += 10);
    }
    // a key with its high bits set: keys are 64-bit on both sides
    check_dropout(LF_F32, 4096, 0.1f, fixed_check_key(0xfedcba9876543210ULL), 900);
    return check_summary("check_dropout");
}

// kernels/convert.cu against csrc/core/convert.c: every direction, exactly
#include "convert.cuh"
#include "kernel_check.cuh"

// values over the whole range: normal, tiny (f16 subnormals), large (f16 overflow), ties
static std::vector<float> wide_values(int64_t n) {
    std::vector<float> x = random_vector(n, -1, 1, 11);
    for (int64_t i = 0; i < n; i++) x[i] *= powf(2.0f, (float)(i % 60) - 30.0f);
    x[0] = 65520.0f; // rounds to Inf in f16
    x[1] = 1.0f + 1.0f / 256.0f; // a bf16 tie
    x[2] = 5.96e-8f; // the smallest f16 subnormal
    return x;
}

static void check_direction(lf_dtype from, lf_dtype to) {
    const int64_t n = 70001;
    std::vector<float> x = rounded(wide_values(n), from);
    std::vector<float> want = rounded(x, to);
    void *src = to_device(x, from), *dst = device_zeros(n, to);
    CHECK_CUDA(convert_cuda(dst, to, src, from, n, 0));
    char what[64];
    snprintf(what, sizeof what, "convert %s -> %s", dtype_label(from), dtype_label(to));
    check_equal(what, from_device(dst, n, to), want);
}

int main(void) {
    for (lf_dtype from : check_dtypes)
        for (lf_dtype to : check_dtypes) check_direction(from, to);
    return check_summary("check_convert");
}

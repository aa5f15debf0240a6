// kernels/rmsnorm.cu against csrc/ops/rmsnorm.c (and residual.c for the fused residual)
#include "kernel_check.cuh"
#include "rmsnorm.cuh"

extern "C" {
#include "ops/residual.h"
#include "ops/rmsnorm.h"
}

struct rmsnorm_shape {
    int N, C;
};

// odd sizes, sizes off multiples of 32/128, one row (C = 1 is left out: its input gradient is 0 up to
// rounding, so its relative error is noise), long rows (Llama's 4096, 14336), many rows
static const rmsnorm_shape rmsnorm_shapes[] = {{1, 3},    {3, 7},     {17, 384},  {5, 1000},
                                               {1, 4096}, {9, 1025},  {6, 4096},  {2, 14336},
                                               {300, 77}, {1000, 64}, {17000, 33}};

static void check_rmsnorm_shape(lf_dtype dt, rmsnorm_shape shape, uint64_t seed) {
    const int N = shape.N, C = shape.C;
    const int64_t n = (int64_t)N * C;
    const float eps = 1e-6f;
    char what[128];
    std::vector<float> inp = rounded(random_vector(n, -2, 2, seed), dt);
    std::vector<float> weight = random_vector(C, 0.5f, 1.5f, seed + 1);
    std::vector<float> want_out((size_t)n), want_rstd(N);
    rmsnorm_forward(want_out.data(), want_rstd.data(), inp.data(), weight.data(), N, C, eps);

    void *d_inp = to_device(inp, dt), *d_out = device_zeros(n, dt);
    float *d_weight = (float *)to_device(weight, LF_F32), *d_rstd = (float *)device_zeros(N, LF_F32);
    CHECK_CUDA(rmsnorm_forward_cuda(d_out, d_rstd, d_inp, d_weight, N, C, eps, dt, 0));
    snprintf(what, sizeof what, "rmsnorm_forward out N=%d C=%d", N, C);
    check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
    snprintf(what, sizeof what, "rmsnorm_forward rstd N=%d C=%d", N, C);
    check_close(what, dt, from_device(d_rstd, N, LF_F32), want_rstd, tolerance(LF_F32));
    void *d_out_no_rstd = device_zeros(n, dt);
    CHECK_CUDA(rmsnorm_forward_cuda(d_out_no_rstd, NULL, d_inp, d_weight, N, C, eps, dt, 0));
    snprintf(what, sizeof what, "rmsnorm_forward rstd NULL N=%d C=%d", N, C);
    check_close(what, dt, from_device(d_out_no_rstd, n, dt), want_out, tolerance(dt));

    // backward from the CPU's rstd, accumulating into non-zero gradients
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 2), dt);
    std::vector<float> dinp = rounded(random_vector(n, -1, 1, seed + 3), dt);
    std::vector<float> dweight = random_vector(C, -1, 1, seed + 4);
    std::vector<float> want_dinp = dinp, want_dweight = dweight;
    rmsnorm_backward(want_dinp.data(), want_dweight.data(), dout.data(), inp.data(), weight.data(),
                     want_rstd.data(), N, C);
    void *d_dout = to_device(dout, dt);
    CHECK_CUDA(cudaMemcpy(d_rstd, want_rstd.data(), N * sizeof(float), cudaMemcpyHostToDevice));

    // variant 0: dinp and dweight; 1: dinp only (frozen weight); 2: dweight only
    for (int variant = 0; variant < 3; variant++) {
        if (emulated() && N > 16384 && variant > 0) break; // the other variants on the smaller shapes
        void *d_dinp = to_device(dinp, dt);
        float *d_dweight = (float *)to_device(dweight, LF_F32);
        int with_dinp = variant != 2, with_dweight = variant != 1;
        CHECK_CUDA(rmsnorm_backward_cuda(with_dinp ? d_dinp : NULL, with_dweight ? d_dweight : NULL, d_dout,
                                         d_inp, d_weight, d_rstd, N, C, dt, 0));
        snprintf(what, sizeof what, "rmsnorm_backward dinp N=%d C=%d variant %d", N, C, variant);
        check_close(what, dt, from_device(d_dinp, n, dt), with_dinp ? want_dinp : dinp, tolerance(dt));
        snprintf(what, sizeof what, "rmsnorm_backward dweight N=%d C=%d variant %d", N, C, variant);
        check_close(what, dt, from_device(d_dweight, C, LF_F32), with_dweight ? want_dweight : dweight,
                    tolerance(LF_F32));
        CHECK_CUDA(cudaFree(d_dinp));
        CHECK_CUDA(cudaFree(d_dweight));
    }
    for (void *p : {d_inp, d_out, d_out_no_rstd, (void *)d_weight, (void *)d_rstd, d_dout})
        CHECK_CUDA(cudaFree(p));
}

// the residual's shapes: Llama's rows (C = 4096), a small C, odd ones
static const rmsnorm_shape residual_rmsnorm_shapes[] = {{3, 7}, {300, 64}, {17, 77}, {9, 1025}, {6, 4096}};

// where residual_rmsnorm_forward_cuda writes the sum: its own buffer, over branch (the decoder's
// way), over residual
enum { SUM_APART, SUM_OVER_BRANCH, SUM_OVER_RESIDUAL };
static const char *const sum_places[] = {"apart", "over branch", "over residual"};

// residual_rmsnorm_forward_cuda against residual_forward then rmsnorm_forward (the sum rounded to dt
// between them, as the unfused GPU path stores it), then its backward: rmsnorm_backward_cuda from the
// fused rstd into the sum's gradient
static void check_residual_rmsnorm_shape(lf_dtype dt, rmsnorm_shape shape, uint64_t seed) {
    const int N = shape.N, C = shape.C;
    const int64_t n = (int64_t)N * C;
    const float eps = 1e-5f;
    char what[160];
    std::vector<float> branch = rounded(random_vector(n, -2, 2, seed), dt);
    std::vector<float> residual = rounded(random_vector(n, -2, 2, seed + 1), dt);
    std::vector<float> weight = random_vector(C, 0.5f, 1.5f, seed + 2);
    std::vector<float> want_sum((size_t)n), want_out((size_t)n), want_rstd(N);
    residual_forward(want_sum.data(), branch.data(), residual.data(), n);
    want_sum = rounded(want_sum, dt);
    rmsnorm_forward(want_out.data(), want_rstd.data(), want_sum.data(), weight.data(), N, C, eps);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 3), dt);
    std::vector<float> dsum = rounded(random_vector(n, -1, 1, seed + 4), dt); // the pass-through gradient
    std::vector<float> want_dsum = dsum;
    rmsnorm_backward(want_dsum.data(), NULL, dout.data(), want_sum.data(), weight.data(), want_rstd.data(), N,
                     C);

    float *d_weight = (float *)to_device(weight, LF_F32);
    for (int place = SUM_APART; place <= SUM_OVER_RESIDUAL; place++) {
        void *d_branch = to_device(branch, dt), *d_residual = to_device(residual, dt);
        void *d_sum = place == SUM_OVER_BRANCH     ? d_branch
                      : place == SUM_OVER_RESIDUAL ? d_residual
                                                   : device_zeros(n, dt);
        void *d_out = device_zeros(n, dt);
        float *d_rstd = (float *)device_zeros(N, LF_F32);
        CHECK_CUDA(residual_rmsnorm_forward_cuda(d_sum, d_out, d_rstd, d_branch, d_residual, d_weight, N, C,
                                                 eps, dt, 0));
        snprintf(what, sizeof what, "residual_rmsnorm_forward sum %s N=%d C=%d", sum_places[place], N, C);
        check_close(what, dt, from_device(d_sum, n, dt), want_sum, tolerance(dt));
        snprintf(what, sizeof what, "residual_rmsnorm_forward out, sum %s N=%d C=%d", sum_places[place], N,
                 C);
        check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
        snprintf(what, sizeof what, "residual_rmsnorm_forward rstd, sum %s N=%d C=%d", sum_places[place], N,
                 C);
        check_close(what, dt, from_device(d_rstd, N, LF_F32), want_rstd, tolerance(LF_F32));
        if (place == SUM_APART) {
            void *d_out_no_rstd = device_zeros(n, dt), *d_sum2 = device_zeros(n, dt);
            CHECK_CUDA(residual_rmsnorm_forward_cuda(d_sum2, d_out_no_rstd, NULL, d_branch, d_residual,
                                                     d_weight, N, C, eps, dt, 0));
            snprintf(what, sizeof what, "residual_rmsnorm_forward rstd NULL N=%d C=%d", N, C);
            check_close(what, dt, from_device(d_out_no_rstd, n, dt), want_out, tolerance(dt));
            void *d_dout = to_device(dout, dt), *d_dsum = to_device(dsum, dt);
            CHECK_CUDA(rmsnorm_backward_cuda(d_dsum, NULL, d_dout, d_sum, d_weight, d_rstd, N, C, dt, 0));
            snprintf(what, sizeof what, "residual_rmsnorm backward dsum N=%d C=%d", N, C);
            check_close(what, dt, from_device(d_dsum, n, dt), want_dsum, tolerance(dt));
            for (void *p : {d_out_no_rstd, d_sum2, d_dout, d_dsum, d_sum})
                CHECK_CUDA(cudaFree(p));
        }
        for (void *p : {d_branch, d_residual, d_out, (void *)d_rstd})
            CHECK_CUDA(cudaFree(p));
    }
    CHECK_CUDA(cudaFree(d_weight));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 200;
        for (rmsnorm_shape shape : rmsnorm_shapes) {
            if (emulated() && shape.N > 16384 && dt != LF_F32) continue; // the capped row chunks: f32 only
            check_rmsnorm_shape(dt, shape, seed += 10);
        }
        for (rmsnorm_shape shape : residual_rmsnorm_shapes)
            check_residual_rmsnorm_shape(dt, shape, seed += 10);
    }
    check_equal("rmsnorm_forward rejects N < 0",
                {(float)rmsnorm_forward_cuda(NULL, NULL, NULL, NULL, -1, 8, 1e-6f, LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    check_equal(
        "residual_rmsnorm_forward rejects a NULL residual",
        {(float)residual_rmsnorm_forward_cuda(NULL, NULL, NULL, NULL, NULL, NULL, 2, 8, 1e-6f, LF_F32, 0)},
        {(float)cudaErrorInvalidValue});
    return check_summary("check_rmsnorm");
}

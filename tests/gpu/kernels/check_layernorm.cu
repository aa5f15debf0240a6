// kernels/layernorm.cu against csrc/ops/layernorm.c, and its fused dropout + residual + LayerNorm against
// csrc/ops/dropout.c, residual.c and layernorm.c in turn
#include "kernel_check.cuh"
#include "layernorm.cuh"

extern "C" {
#include "ops/dropout.h"
#include "ops/layernorm.h"
#include "ops/residual.h"
}

struct layernorm_shape {
    int T, C;
};

// odd sizes, sizes off multiples of 32/128, one row, a row of one, long rows, many rows (the weight
// gradient's row chunks, up to their cap of 256 blocks per column)
static const layernorm_shape layernorm_shapes[] = {{1, 1},     {3, 7},    {17, 384},  {5, 1000},
                                                   {1, 1024},  {9, 1025}, {4, 4096},  {3, 8192},
                                                   {2, 14336}, {300, 77}, {1000, 64}, {17000, 33}};

static void check_layernorm_shape(lf_dtype dt, layernorm_shape shape, uint64_t seed) {
    const int T = shape.T, C = shape.C;
    const int64_t n = (int64_t)T * C;
    const float eps = 1e-5f;
    char what[128];
    // a mean away from 0 so the two-pass variance and the saved mean are both exercised
    std::vector<float> inp = rounded(random_vector(n, -1, 3, seed), dt);
    std::vector<float> weight = random_vector(C, 0.5f, 1.5f, seed + 1),
                       bias = random_vector(C, -0.5f, 0.5f, seed + 2);
    std::vector<float> want_out((size_t)n), want_mean(T), want_rstd(T);
    layernorm_forward(want_out.data(), want_mean.data(), want_rstd.data(), inp.data(), weight.data(),
                      bias.data(), T, C, eps);

    void *d_inp = to_device(inp, dt), *d_out = device_zeros(n, dt);
    float *d_weight = (float *)to_device(weight, LF_F32), *d_bias = (float *)to_device(bias, LF_F32);
    float *d_mean = (float *)device_zeros(T, LF_F32), *d_rstd = (float *)device_zeros(T, LF_F32);
    CHECK_CUDA(layernorm_forward_cuda(d_out, d_mean, d_rstd, d_inp, d_weight, d_bias, T, C, eps, dt, 0));
    snprintf(what, sizeof what, "layernorm_forward out T=%d C=%d", T, C);
    check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
    snprintf(what, sizeof what, "layernorm_forward mean T=%d C=%d", T, C);
    check_close(what, dt, from_device(d_mean, T, LF_F32), want_mean, tolerance(LF_F32));
    snprintf(what, sizeof what, "layernorm_forward rstd T=%d C=%d", T, C);
    check_close(what, dt, from_device(d_rstd, T, LF_F32), want_rstd, tolerance(LF_F32));

    // backward from the CPU's statistics, accumulating into non-zero gradients
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed + 3), dt);
    std::vector<float> dinp = rounded(random_vector(n, -1, 1, seed + 4), dt);
    std::vector<float> dweight = random_vector(C, -1, 1, seed + 5), dbias = random_vector(C, -1, 1, seed + 6);
    std::vector<float> want_dinp = dinp, want_dweight = dweight, want_dbias = dbias;
    layernorm_backward(want_dinp.data(), want_dweight.data(), want_dbias.data(), dout.data(), inp.data(),
                       weight.data(), want_mean.data(), want_rstd.data(), T, C);
    void *d_dout = to_device(dout, dt);
    CHECK_CUDA(cudaMemcpy(d_mean, want_mean.data(), T * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d_rstd, want_rstd.data(), T * sizeof(float), cudaMemcpyHostToDevice));

    // variant 0: dweight and dbias; 1: dweight only; 2: dbias only; 3: neither (frozen)
    for (int variant = 0; variant < 4; variant++) {
        if (emulated() && T > 16384 && variant > 0) break; // the other variants on the smaller shapes
        void *d_dinp = to_device(dinp, dt);
        float *d_dweight = (float *)to_device(dweight, LF_F32), *d_dbias = (float *)to_device(dbias, LF_F32);
        int with_dweight = variant == 0 || variant == 1, with_dbias = variant == 0 || variant == 2;
        CHECK_CUDA(layernorm_backward_cuda(d_dinp, with_dweight ? d_dweight : NULL,
                                           with_dbias ? d_dbias : NULL, d_dout, d_inp, d_weight, d_mean,
                                           d_rstd, T, C, dt, 0));
        snprintf(what, sizeof what, "layernorm_backward dinp T=%d C=%d variant %d", T, C, variant);
        check_close(what, dt, from_device(d_dinp, n, dt), want_dinp, tolerance(dt));
        snprintf(what, sizeof what, "layernorm_backward dweight T=%d C=%d variant %d", T, C, variant);
        check_close(what, dt, from_device(d_dweight, C, LF_F32), with_dweight ? want_dweight : dweight,
                    tolerance(LF_F32));
        snprintf(what, sizeof what, "layernorm_backward dbias T=%d C=%d variant %d", T, C, variant);
        check_close(what, dt, from_device(d_dbias, C, LF_F32), with_dbias ? want_dbias : dbias,
                    tolerance(LF_F32));
        CHECK_CUDA(cudaFree(d_dinp));
        CHECK_CUDA(cudaFree(d_dweight));
        CHECK_CUDA(cudaFree(d_dbias));
    }
    for (void *p : {d_inp, d_out, (void *)d_weight, (void *)d_bias, (void *)d_mean, (void *)d_rstd, d_dout})
        CHECK_CUDA(cudaFree(p));
}

// ---- dropout_residual_layernorm_{forward,backward}_cuda against the CPU ops in turn, rounded to the dtype
// where the GPU's unfused chain stores (the dropped branch, the sum, the LayerNorm input gradient) ----

// BERT-base's rows, the 1024 of roberta-large, odd ones
static const layernorm_shape fused_shapes[] = {{33, 64}, {5, 1024}, {9, 1025}, {300, 77}};

// forward: sum written apart (0), over branch (1, the encoder's), over residual (2)
static void check_fused_forward(lf_dtype dt, int T, int C, float p, check_key key,
                                const std::vector<float> &branch, const std::vector<float> &residual,
                                const std::vector<float> &weight, const std::vector<float> &bias,
                                const std::vector<float> &want_sum, float eps) {
    const int64_t n = (int64_t)T * C;
    char what[160];
    std::vector<float> want_out((size_t)n), want_mean(T), want_rstd(T);
    layernorm_forward(want_out.data(), want_mean.data(), want_rstd.data(), want_sum.data(), weight.data(),
                      bias.data(), T, C, eps);
    for (int alias = 0; alias < 3; alias++) {
        device_buffers b;
        void *d_branch = b.add(to_device(branch, dt)), *d_residual = b.add(to_device(residual, dt));
        void *d_sum = alias == 1 ? d_branch : alias == 2 ? d_residual : b.add(device_zeros(n, dt));
        void *d_out = b.add(device_zeros(n, dt));
        float *d_weight = (float *)b.add(to_device(weight, LF_F32)),
              *d_bias = (float *)b.add(to_device(bias, LF_F32));
        float *d_mean = (float *)b.add(device_zeros(T, LF_F32)),
              *d_rstd = (float *)b.add(device_zeros(T, LF_F32));
        snprintf(what, sizeof what, "dropout_residual_layernorm_forward T=%d C=%d p=%g%s alias %d", T, C, p,
                 key.label, alias);
        if (!launched(what, dropout_residual_layernorm_forward_cuda(d_out, d_mean, d_rstd, d_sum, d_branch,
                                                                    d_residual, d_weight, d_bias, T, C, eps,
                                                                    p, key.gpu, dt, 0)))
            continue;
        snprintf(what, sizeof what, "dropout_residual_layernorm_forward sum T=%d C=%d p=%g%s alias %d", T, C,
                 p, key.label, alias);
        check_equal(what, from_device(d_sum, n, dt), want_sum);
        snprintf(what, sizeof what, "dropout_residual_layernorm_forward out T=%d C=%d p=%g%s alias %d", T, C,
                 p, key.label, alias);
        check_close(what, dt, from_device(d_out, n, dt), want_out, tolerance(dt));
        snprintf(what, sizeof what, "dropout_residual_layernorm_forward mean T=%d C=%d p=%g%s alias %d", T, C,
                 p, key.label, alias);
        check_close(what, dt, from_device(d_mean, T, LF_F32), want_mean, tolerance(LF_F32));
        snprintf(what, sizeof what, "dropout_residual_layernorm_forward rstd T=%d C=%d p=%g%s alias %d", T, C,
                 p, key.label, alias);
        check_close(what, dt, from_device(d_rstd, T, LF_F32), want_rstd, tolerance(LF_F32));
    }
}

// backward from the CPU's statistics. variant 0: the encoder's (outputs apart, frozen weight and bias);
// 1: dweight and dbias; 2: dresidual over dout, dweight only; 3: dbranch over dout, dbias only
static void check_fused_backward(lf_dtype dt, int T, int C, float p, check_key key,
                                 const std::vector<float> &sum, const std::vector<float> &weight, float eps,
                                 uint64_t seed) {
    const int64_t n = (int64_t)T * C;
    char what[160];
    std::vector<float> out((size_t)n), mean(T), rstd(T);
    std::vector<float> bias(C, 0.0f);
    layernorm_forward(out.data(), mean.data(), rstd.data(), sum.data(), weight.data(), bias.data(), T, C,
                      eps);
    std::vector<float> dout = rounded(random_vector(n, -1, 1, seed), dt);
    std::vector<float> garbage =
        rounded(random_vector(n, -1, 1, seed + 1), dt); // outputs are written, not added
    std::vector<float> dweight = random_vector(C, -1, 1, seed + 2), dbias = random_vector(C, -1, 1, seed + 3);
    std::vector<float> want_dres((size_t)n, 0.0f), want_dweight = dweight, want_dbias = dbias;
    layernorm_backward(want_dres.data(), want_dweight.data(), want_dbias.data(), dout.data(), sum.data(),
                       weight.data(), mean.data(), rstd.data(), T, C);
    want_dres = rounded(want_dres, dt);
    std::vector<float> want_dbranch = want_dres;
    dropout_backward_inplace(want_dbranch.data(), n, p, key.cpu);
    for (int variant = 0; variant < 4; variant++) {
        device_buffers b;
        void *d_dout = b.add(to_device(dout, dt)), *d_sum = b.add(to_device(sum, dt));
        void *d_dres = variant == 2 ? d_dout : b.add(to_device(garbage, dt));
        void *d_dbranch = variant == 3 ? d_dout : b.add(to_device(garbage, dt));
        float *d_weight = (float *)b.add(to_device(weight, LF_F32));
        float *d_mean = (float *)b.add(to_device(mean, LF_F32)),
              *d_rstd = (float *)b.add(to_device(rstd, LF_F32));
        float *d_dweight = (float *)b.add(to_device(dweight, LF_F32)),
              *d_dbias = (float *)b.add(to_device(dbias, LF_F32));
        int with_dweight = variant == 1 || variant == 2, with_dbias = variant == 1 || variant == 3;
        snprintf(what, sizeof what, "dropout_residual_layernorm_backward T=%d C=%d p=%g%s variant %d", T, C,
                 p, key.label, variant);
        if (!launched(what,
                      dropout_residual_layernorm_backward_cuda(
                          d_dres, d_dbranch, with_dweight ? d_dweight : NULL, with_dbias ? d_dbias : NULL,
                          d_dout, d_sum, d_weight, d_mean, d_rstd, T, C, p, key.gpu, dt, 0)))
            continue;
        snprintf(what, sizeof what,
                 "dropout_residual_layernorm_backward dresidual T=%d C=%d p=%g%s variant %d", T, C, p,
                 key.label, variant);
        check_close(what, dt, from_device(d_dres, n, dt), want_dres, tolerance(dt));
        snprintf(what, sizeof what, "dropout_residual_layernorm_backward dbranch T=%d C=%d p=%g%s variant %d",
                 T, C, p, key.label, variant);
        check_close(what, dt, from_device(d_dbranch, n, dt), want_dbranch, tolerance(dt));
        snprintf(what, sizeof what, "dropout_residual_layernorm_backward dweight T=%d C=%d p=%g%s variant %d",
                 T, C, p, key.label, variant);
        check_close(what, dt, from_device(d_dweight, C, LF_F32), with_dweight ? want_dweight : dweight,
                    tolerance(LF_F32));
        snprintf(what, sizeof what, "dropout_residual_layernorm_backward dbias T=%d C=%d p=%g%s variant %d",
                 T, C, p, key.label, variant);
        check_close(what, dt, from_device(d_dbias, C, LF_F32), with_dbias ? want_dbias : dbias,
                    tolerance(LF_F32));
    }
}

static void check_fused_shape(lf_dtype dt, layernorm_shape shape, float p, uint64_t seed,
                              check_key_kind key_kind) {
    const int T = shape.T, C = shape.C;
    const int64_t n = (int64_t)T * C;
    const float eps = 1e-5f;
    const check_key key = check_key_of(key_kind, seed, 11);
    // the sum's mean away from 0, as in check_layernorm_shape
    std::vector<float> branch = rounded(random_vector(n, -1, 1, seed), dt);
    std::vector<float> residual = rounded(random_vector(n, 0, 2, seed + 1), dt);
    std::vector<float> weight = random_vector(C, 0.5f, 1.5f, seed + 2),
                       bias = random_vector(C, -0.5f, 0.5f, seed + 3);
    std::vector<float> sum((size_t)n);
    dropout_forward(sum.data(), branch.data(), n, p, key.cpu);
    sum = rounded(sum, dt);
    residual_forward(sum.data(), sum.data(), residual.data(), n);
    sum = rounded(sum, dt);
    check_fused_forward(dt, T, C, p, key, branch, residual, weight, bias, sum, eps);
    check_fused_backward(dt, T, C, p, key, sum, weight, eps, seed + 4);
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        uint64_t seed = 100;
        for (layernorm_shape shape : layernorm_shapes) {
            if (emulated() && shape.T > 16384 && dt != LF_F32) continue; // the capped row chunks: f32 only
            check_layernorm_shape(dt, shape, seed += 10);
        }
        for (layernorm_shape shape : fused_shapes)
            for (float p : {0.0f, 0.1f})
                check_fused_shape(dt, shape, p, seed += 10, FIXED_KEY);
        check_fused_shape(dt, fused_shapes[1], 0.1f, seed += 10, DEVICE_KEY);
        check_fused_shape(dt, fused_shapes[0], 0.0f, seed += 10, UNREADABLE_KEY);
    }
    CHECK_CUDA(layernorm_forward_cuda(NULL, NULL, NULL, NULL, NULL, NULL, 0, 16, 1e-5f, LF_F32, 0)); // T = 0
    check_equal("layernorm_forward rejects C < 0",
                {(float)layernorm_forward_cuda(NULL, NULL, NULL, NULL, NULL, NULL, 4, -1, 1e-5f, LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    char dummy[4];
    check_equal("dropout_residual_layernorm_backward rejects dresidual == dbranch",
                {(float)dropout_residual_layernorm_backward_cuda(
                    dummy, dummy, NULL, NULL, dummy, dummy, (float *)dummy, (float *)dummy, (float *)dummy, 4,
                    16, 0.1f, lf_cuda_fixed_key(1), LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    check_equal("dropout_residual_layernorm_forward rejects a NULL sum",
                {(float)dropout_residual_layernorm_forward_cuda(
                    dummy, (float *)dummy, (float *)dummy, NULL, dummy, dummy, (float *)dummy, (float *)dummy,
                    4, 16, 1e-5f, 0.1f, lf_cuda_fixed_key(1), LF_F32, 0)},
                {(float)cudaErrorInvalidValue});
    return check_summary("check_layernorm");
}

// kernels/residual.cu against csrc/ops/residual.c
#include "kernel_check.cuh"
#include "residual.cuh"

extern "C" {
#include "ops/residual.h"
}

static void check_residual(lf_dtype dt) {
    const int64_t n = 100003; // not a multiple of the block size
    std::vector<float> a = rounded(random_vector(n, -2, 2, 1), dt), b = rounded(random_vector(n, -2, 2, 2), dt);
    std::vector<float> want(n);
    residual_forward(want.data(), a.data(), b.data(), n);
    void *da = to_device(a, dt), *db = to_device(b, dt), *dout = device_zeros(n, dt);
    CHECK_CUDA(residual_forward_cuda(dout, da, db, n, dt, 0));
    check_close("residual_forward", dt, from_device(dout, n, dt), want, tolerance(dt));
    CHECK_CUDA(residual_forward_cuda(da, da, db, n, dt, 0)); // out aliasing a
    check_close("residual_forward in place", dt, from_device(da, n, dt), want, tolerance(dt));
}

static void check_gather_rows(lf_dtype dt) {
    const int T = 77, C = 1000, B = 5;
    std::vector<int32_t> index = {0, 13, 40, 41, 76}; // e.g. the first token of each sequence
    std::vector<float> inp = rounded(random_vector((int64_t)T * C, -1, 1, 3), dt);
    std::vector<float> dout = rounded(random_vector((int64_t)B * C, -1, 1, 4), dt);
    std::vector<float> dinp = rounded(random_vector((int64_t)T * C, -1, 1, 5), dt);
    std::vector<float> want_out((size_t)B * C), want_dinp = dinp;
    gather_rows_forward(want_out.data(), inp.data(), index.data(), B, C);
    gather_rows_backward(want_dinp.data(), dout.data(), index.data(), B, C);
    int32_t *dindex = NULL;
    CHECK_CUDA(cudaMalloc(&dindex, B * sizeof(int32_t)));
    CHECK_CUDA(cudaMemcpy(dindex, index.data(), B * sizeof(int32_t), cudaMemcpyHostToDevice));
    void *dinp_x = to_device(inp, dt), *dout_rows = device_zeros((int64_t)B * C, dt);
    CHECK_CUDA(gather_rows_forward_cuda(dout_rows, dinp_x, dindex, B, C, dt, 0));
    check_close("gather_rows_forward", dt, from_device(dout_rows, (int64_t)B * C, dt), want_out, tolerance(dt));
    void *dgrad = to_device(dinp, dt), *ddout = to_device(dout, dt);
    CHECK_CUDA(gather_rows_backward_cuda(dgrad, ddout, dindex, B, C, dt, 0));
    check_close("gather_rows_backward", dt, from_device(dgrad, (int64_t)T * C, dt), want_dinp, tolerance(dt));
}

int main(void) {
    for (lf_dtype dt : check_dtypes) {
        check_residual(dt);
        check_gather_rows(dt);
    }
    return check_summary("check_residual");
}

// kernels/matmul.cu against csrc/ops/matmul.c

// First: ops/weight.h defines lf_bf16_to_f32 and lf_f16_to_f32 static inline, and C++ accepts
// core/convert.h's plain declarations of them only after that, not before.
extern "C" {
#include "ops/matmul.h"
}

#include "kernel_check.cuh"
#include "matmul.cuh"

struct matmul_shape {
    int T, C, OC;
};

// one shape's inputs, rounded to the dtype under test (dw0, db0: f32 gradients)
struct matmul_inputs {
    matmul_shape s;
    std::vector<float> x, w, bias, out0, dout, dx0, dw0, db0;
};

static void *workspace;

static matmul_inputs make_inputs(matmul_shape s, lf_dtype dt, uint64_t seed) {
    const int64_t xs = (int64_t)s.T * s.C, ws = (int64_t)s.OC * s.C, os = (int64_t)s.T * s.OC;
    matmul_inputs in;
    in.s = s;
    in.x = rounded(random_vector(xs, -1, 1, seed), dt);
    in.w = rounded(random_vector(ws, -0.1f, 0.1f, seed + 1), dt);
    in.bias = rounded(random_vector(s.OC, -1, 1, seed + 2), dt);
    in.out0 = rounded(random_vector(os, -1, 1, seed + 3), dt);
    in.dout = rounded(random_vector(os, -1, 1, seed + 4), dt);
    in.dx0 = rounded(random_vector(xs, -1, 1, seed + 5), dt);
    in.dw0 = random_vector(ws, -1, 1, seed + 6);
    in.db0 = random_vector(s.OC, -1, 1, seed + 7);
    return in;
}

static void label(char *buf, size_t size, const char *op, const matmul_shape &s, const char *variant) {
    snprintf(buf, size, "%s T=%d C=%d OC=%d %s", op, s.T, s.C, s.OC, variant);
}

// out = x w^T (+ bias) (+ out), against matmul_forward; offset: elements by which the device
// operands start past an aligned address (cuBLASLt must be told their real alignment)
static void check_forward(lf_dtype dt, const matmul_inputs &in, int with_bias, int accumulate, void *ws,
                          int offset) {
    const matmul_shape &s = in.s;
    char what[160], variant[80];
    snprintf(variant, sizeof variant, "%s%s%s%s", with_bias ? "bias" : "no-bias",
             accumulate ? " accumulate" : "", ws ? "" : " no-workspace", offset ? " offset" : "");
    label(what, sizeof what, "matmul_forward", s, variant);
    std::vector<float> want = in.out0;
    matmul_forward(want.data(), in.x.data(), lf_weight_f32(in.w.data()), with_bias ? in.bias.data() : NULL,
                   s.T, s.C, s.OC, accumulate, NULL);
    std::vector<float> pad((size_t)offset, 0.0f);
    auto padded = [&](const std::vector<float> &v) {
        std::vector<float> p = pad;
        p.insert(p.end(), v.begin(), v.end());
        return p;
    };
    const size_t esize = lf_cuda_dtype_size(dt);
    device_buffers buf;
    char *dx = (char *)buf.add(to_device(padded(in.x), dt)) + offset * esize;
    char *dw = (char *)buf.add(to_device(padded(in.w), dt)) + offset * esize;
    char *db = (char *)buf.add(to_device(padded(in.bias), dt)) + offset * esize;
    char *dout = (char *)buf.add(to_device(padded(in.out0), dt)) + offset * esize;
    if (!launched(what, matmul_forward_cuda(dout, dx, dw, with_bias ? db : NULL, s.T, s.C, s.OC, accumulate,
                                            ws, dt, 0)))
        return;
    check_close(what, dt, from_device(dout, (int64_t)s.T * s.OC, dt), want, tolerance(dt));
}

// dx += dout w (accumulate_dx 0: dx =, over a NaN-filled dx it must not read), dw += dout^T x,
// db += sum_t dout, each optional, against matmul_backward
static void check_backward(lf_dtype dt, const matmul_inputs &in, int need_dx, int need_dw, int need_db,
                           int accumulate_dx) {
    const matmul_shape &s = in.s;
    char variant[80], what[160], name[200];
    snprintf(variant, sizeof variant, "%s%s%s%s", need_dx ? "dx" : "", need_dw ? " dw" : "",
             need_db ? " db" : "", accumulate_dx ? "" : " dx-written");
    label(what, sizeof what, "matmul_backward", s, variant);
    const std::vector<float> dx0 = accumulate_dx ? in.dx0 : std::vector<float>(in.dx0.size(), NAN);
    std::vector<float> want_dx = accumulate_dx ? in.dx0 : std::vector<float>(in.dx0.size(), 0.0f);
    std::vector<float> want_dw = in.dw0, want_db = in.db0;
    matmul_backward(need_dx ? want_dx.data() : NULL, need_dw ? want_dw.data() : NULL,
                    need_db ? want_db.data() : NULL, in.dout.data(), in.x.data(), lf_weight_f32(in.w.data()),
                    s.T, s.C, s.OC, 1, NULL);
    device_buffers buf;
    void *dx = buf.add(to_device(dx0, dt)), *dw = buf.add(to_device(in.dw0, LF_F32));
    void *db = buf.add(to_device(in.db0, LF_F32)), *dout = buf.add(to_device(in.dout, dt));
    void *x = buf.add(to_device(in.x, dt)), *w = buf.add(to_device(in.w, dt));
    if (!launched(what, matmul_backward_cuda(need_dx ? dx : NULL, need_dw ? (float *)dw : NULL,
                                             need_db ? (float *)db : NULL, dout, x, w, s.T, s.C, s.OC,
                                             accumulate_dx, workspace, dt, 0)))
        return;
    if (need_dx) {
        snprintf(name, sizeof name, "%s: dx", what);
        check_close(name, dt, from_device(dx, (int64_t)s.T * s.C, dt), want_dx, tolerance(dt));
    }
    if (need_dw) {
        snprintf(name, sizeof name, "%s: dw", what);
        check_close(name, dt, from_device(dw, (int64_t)s.OC * s.C, LF_F32), want_dw, tolerance(dt));
    }
    if (need_db) {
        snprintf(name, sizeof name, "%s: db", what);
        check_close(name, dt, from_device(db, s.OC, LF_F32), want_db, tolerance(dt));
    }
}

// the separate bias kernel (taken when no cuBLASLt epilogue accepts the bias)
static void check_bias_add(lf_dtype dt) {
    const int T = 37, OC = 1000;
    std::vector<float> out = rounded(random_vector((int64_t)T * OC, -1, 1, 90), dt);
    std::vector<float> bias = rounded(random_vector(OC, -1, 1, 91), dt), want = out;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++)
            want[(size_t)t * OC + o] += bias[o];
    device_buffers buf;
    void *dout = buf.add(to_device(out, dt)), *db = buf.add(to_device(bias, dt));
    if (launched("matmul_bias_add", matmul_bias_add_cuda(dout, db, T, OC, dt, 0)))
        check_close("matmul_bias_add T=37 OC=1000", dt, from_device(dout, (int64_t)T * OC, dt), want,
                    tolerance(dt));
}

// OC == 0: no product, so a written dx is all zeros (operands other than dx are never read)
static void check_backward_empty(lf_dtype dt) {
    const int T = 5, C = 64;
    device_buffers buf;
    void *dx = buf.add(to_device(std::vector<float>((size_t)T * C, NAN), dt));
    if (launched("matmul_backward OC=0",
                 matmul_backward_cuda(dx, NULL, NULL, NULL, NULL, NULL, T, C, 0, 0, workspace, dt, 0)))
        check_equal("matmul_backward T=5 C=64 OC=0 dx-written", from_device(dx, (int64_t)T * C, dt),
                    std::vector<float>((size_t)T * C, 0.0f));
}

static const matmul_shape shapes[] = {
    {1, 64, 64},      {37, 64, 64},    {256, 64, 64},     {1, 384, 1000},    {37, 384, 1000},
    {256, 1000, 384}, {1, 1024, 1024}, {37, 1024, 1024},  {256, 1024, 1024}, {256, 4096, 1024},
    {37, 1024, 4096}, {1, 4096, 1024}, {37, 4096, 14336}, {37, 14336, 4096},
};

int main(void) {
    CHECK_CUDA(cudaMalloc(&workspace, matmul_workspace_bytes()));
    uint64_t seed = 100;
    for (lf_dtype dt : check_dtypes) {
        int i = 0;
        for (const matmul_shape &s : shapes) {
            if (emulated() && (double)s.T * s.C * s.OC > 3e8) { // the largest products: on a GPU only
                i++;
                continue;
            }
            const matmul_inputs in = make_inputs(s, dt, seed += 10);
            const int small = (double)s.T * s.C * s.OC < 1e8;
            check_forward(dt, in, 1, 0, workspace, 0);
            check_forward(dt, in, 0, 1, workspace, 0);
            if (small) {
                check_forward(dt, in, 0, 0, workspace, 0);
                check_forward(dt, in, 1, 1, workspace, 0);
            }
            check_backward(dt, in, 1, 1, 1, 1);
            // each of dx, dw, db left out in turn; then dx written, not accumulated
            check_backward(dt, in, i % 3 != 0, i % 3 != 1, i % 3 != 2, 1);
            if (small) check_backward(dt, in, 1, i % 2, 0, 0);
            if (i == 4) check_backward(dt, in, 0, 0, 1, 1);
            i++;
        }
        const matmul_inputs in = make_inputs({37, 1000, 384}, dt, seed += 10);
        check_forward(dt, in, 1, 1, NULL, 0);      // no workspace
        check_forward(dt, in, 1, 1, workspace, 4); // operands 8 (16-bit) or 16 (f32) bytes past alignment
        check_forward(dt, in, 0, 0, workspace, 4);
        check_bias_add(dt);
        check_backward_empty(dt);
    }
    cudaFree(workspace);
    return check_summary("check_matmul");
}

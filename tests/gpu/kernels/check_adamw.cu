// kernels/adamw.cu against csrc/train/clip.c and csrc/train/adamw.c
#include "adamw.cuh"
#include "kernel_check.cuh"

extern "C" {
#include "train/clip.h"
}

// The update is adamw.c's float arithmetic operation for operation, so f32 results should be
// equal; the tolerance leaves room for the norm's double sum, whose order differs, moving the clip
// factor by an ulp. "bitwise" lines report how many values are exactly the CPU's.
static const double ADAMW_TOLERANCE = 1e-6;

// the lf_update a norm-and-clip call reads: (adam unused, step unused, grad_scale, max_grad_norm,
// whether an inf/NaN norm skips the update)
static const lf_update *clip_update(double max_norm, float inv_scale, int skip) {
    static lf_update u;
    u = lf_update{{0, 0, 0, 0, 0}, 0, inv_scale, max_norm, skip};
    return &u;
}

static const int64_t tensor_sizes[] = {1, 7, 1000, 4099, 65537, 300001};
static const int tensor_no_decay[] = {0, 1, 0, 1, 0, 0};
enum { N_TENSORS = sizeof tensor_sizes / sizeof tensor_sizes[0] };

// the trainable tensors on both sides: host copies (the CPU's state) and device buffers
struct trainables {
    std::vector<std::vector<float>> p, m, v;
    std::vector<float *> dp, dg, dm, dv;
    lf_adamw_tensor *table = NULL;    // device
    lf_grad_norm_state *state = NULL; // device
};

static void make_trainables(trainables &t, uint64_t seed) {
    std::vector<lf_adamw_tensor> table;
    for (int i = 0; i < N_TENSORS; i++) {
        const int64_t n = tensor_sizes[i];
        t.p.push_back(random_vector(n, -1, 1, seed + 4 * i));
        t.m.push_back(std::vector<float>((size_t)n, 0.0f));
        t.v.push_back(std::vector<float>((size_t)n, 0.0f));
        t.dp.push_back((float *)to_device(t.p[i], LF_F32));
        t.dg.push_back((float *)device_zeros(n, LF_F32));
        t.dm.push_back((float *)device_zeros(n, LF_F32));
        t.dv.push_back((float *)device_zeros(n, LF_F32));
        table.push_back({t.dp[i], t.dg[i], t.dm[i], t.dv[i], n, tensor_no_decay[i]});
    }
    CHECK_CUDA(cudaMalloc(&t.table, sizeof(lf_adamw_tensor) * N_TENSORS));
    CHECK_CUDA(
        cudaMemcpy(t.table, table.data(), sizeof(lf_adamw_tensor) * N_TENSORS, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMalloc(&t.state, sizeof(lf_grad_norm_state)));
    CHECK_CUDA(cudaMemset(t.state, 0xff, sizeof(lf_grad_norm_state))); // garbage until the first norm
}

static void free_trainables(trainables &t) {
    for (int i = 0; i < N_TENSORS; i++) {
        cudaFree(t.dp[i]);
        cudaFree(t.dg[i]);
        cudaFree(t.dm[i]);
        cudaFree(t.dv[i]);
    }
    cudaFree(t.table);
    cudaFree(t.state);
}

static lf_grad_norm_state read_state(const trainables &t) {
    lf_grad_norm_state s;
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaMemcpy(&s, t.state, sizeof s, cudaMemcpyDeviceToHost));
    return s;
}

static void report_bitwise(const char *what, const std::vector<float> &got, const std::vector<float> &want) {
    size_t same = 0;
    for (size_t i = 0; i < want.size() && i < got.size(); i++)
        same += memcmp(&got[i], &want[i], sizeof(float)) == 0;
    printf("     bitwise %s: %zu of %zu equal\n", what, same, want.size());
}

// p, m, v of every tensor on the device against the host copies
static void compare_trainables(const trainables &t, const char *what) {
    char name[200];
    const char *parts[] = {"param", "m", "v"};
    for (int i = 0; i < N_TENSORS; i++) {
        const std::vector<float> *want[] = {&t.p[i], &t.m[i], &t.v[i]};
        float *const got[] = {t.dp[i], t.dm[i], t.dv[i]};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "%s: tensor %d (n %lld) %s", what, i, (long long)tensor_sizes[i],
                     parts[k]);
            std::vector<float> g = from_device(got[k], tensor_sizes[i], LF_F32);
            check_close(name, LF_F32, g, *want[k], ADAMW_TOLERANCE);
            report_bitwise(name, g, *want[k]);
        }
    }
}

// Steps 1 .. steps of clipping (max_norm, 0: off) and AdamW, on gradients stored as grad / inv_scale
// (a loss-scaled backward) and unscaled by the kernels, against clip.c and adamw.c on grad.
static void check_steps(double weight_decay, double max_norm, float inv_scale, int steps, int use_state,
                        uint64_t seed) {
    char what[160];
    snprintf(what, sizeof what, "adamw wd=%g max_norm=%g inv_scale=%g%s", weight_decay, max_norm, inv_scale,
             use_state ? "" : " no-state");
    trainables t;
    make_trainables(t, seed);
    lf_adamw_hparams h = {1e-3, 0.9, 0.999, 1e-8, weight_decay};
    for (int step = 1; step <= steps; step++) {
        // the CPU: unscaled float gradients, norm, clip, update
        std::vector<std::vector<float>> g(N_TENSORS);
        float *gp[N_TENSORS];
        for (int i = 0; i < N_TENSORS; i++) {
            std::vector<float> stored =
                random_vector(tensor_sizes[i], -1.0f / inv_scale, 1.0f / inv_scale, seed + 1000 * step + i);
            CHECK_CUDA(cudaMemcpy(t.dg[i], stored.data(), stored.size() * 4, cudaMemcpyHostToDevice));
            g[i] = stored;
            if (use_state)
                for (float &x : g[i])
                    x *= inv_scale;
            gp[i] = g[i].data();
        }
        double norm = grad_global_norm(gp, tensor_sizes, N_TENSORS);
        if (use_state && max_norm > 0) grad_clip(gp, tensor_sizes, N_TENSORS, norm, max_norm);
        for (int i = 0; i < N_TENSORS; i++) {
            lf_adamw_hparams hi = h;
            if (tensor_no_decay[i]) hi.weight_decay = 0.0;
            adamw_update(t.p[i].data(), gp[i], t.m[i].data(), t.v[i].data(), tensor_sizes[i], &hi, step);
        }
        // the GPU
        if (use_state && !launched(what, grad_norm_clip_cuda(t.state, t.table, N_TENSORS,
                                                             clip_update(max_norm, inv_scale, 1), 0)))
            break;
        if (!launched(what, adamw_update_cuda(t.table, N_TENSORS, &h, step, use_state ? t.state : NULL, 0)))
            break;
        if (use_state) {
            const lf_grad_norm_state s = read_state(t);
            float coef = max_norm > 0 ? (float)max_norm / ((float)norm + 1e-6f) : 1.0f;
            if (coef > 1.0f) coef = 1.0f;
            char name[200];
            snprintf(name, sizeof name, "%s step %d: norm", what, step);
            check_close(name, LF_F32, {(float)s.norm}, {(float)norm}, 3e-7);
            snprintf(name, sizeof name, "%s step %d: clip factor %g", what, step, coef);
            check_close(name, LF_F32, {s.clip}, {coef}, 3e-7);
            snprintf(name, sizeof name, "%s step %d: found_inf, skip", what, step);
            check_equal(name, {(float)s.found_inf, (float)s.skip}, {0.0f, 0.0f});
        }
        if (step == 1 || step == steps) {
            char name[200];
            snprintf(name, sizeof name, "%s step %d", what, step);
            compare_trainables(t, name);
        }
    }
    free_trainables(t);
}

// A non-finite gradient (inf, then NaN) with skipping on: found_inf and skip set, p, m, v untouched;
// the next finite step updates again. Without skipping, found_inf is still reported.
static void check_nonfinite(void) {
    trainables t;
    make_trainables(t, 4000);
    lf_adamw_hparams h = {1e-3, 0.9, 0.999, 1e-8, 0.01};
    const float bad_values[] = {INFINITY, NAN};
    for (int round = 0; round < 2; round++) {
        char what[160];
        snprintf(what, sizeof what, "adamw non-finite grad (%s): skipped", round == 0 ? "inf" : "nan");
        for (int i = 0; i < N_TENSORS; i++) {
            std::vector<float> g = random_vector(tensor_sizes[i], -1, 1, 4100 + i);
            if (i == 3) g[5] = bad_values[round];
            CHECK_CUDA(cudaMemcpy(t.dg[i], g.data(), g.size() * 4, cudaMemcpyHostToDevice));
        }
        if (!launched(what, grad_norm_clip_cuda(t.state, t.table, N_TENSORS, clip_update(0.3, 1.0f, 1), 0)))
            break;
        if (!launched(what, adamw_update_cuda(t.table, N_TENSORS, &h, 1, t.state, 0))) break;
        const lf_grad_norm_state s = read_state(t);
        char name[200];
        snprintf(name, sizeof name, "%s: found_inf, skip", what);
        check_equal(name, {(float)s.found_inf, (float)s.skip}, {1.0f, 1.0f});
        for (int i = 0; i < N_TENSORS; i++) {
            snprintf(name, sizeof name, "%s: tensor %d param, m, v unchanged", what, i);
            std::vector<float> got = from_device(t.dp[i], tensor_sizes[i], LF_F32), want = t.p[i];
            std::vector<float> gm = from_device(t.dm[i], tensor_sizes[i], LF_F32);
            std::vector<float> gv = from_device(t.dv[i], tensor_sizes[i], LF_F32);
            got.insert(got.end(), gm.begin(), gm.end());
            got.insert(got.end(), gv.begin(), gv.end());
            want.insert(want.end(), t.m[i].begin(), t.m[i].end());
            want.insert(want.end(), t.v[i].begin(), t.v[i].end());
            check_equal(name, got, want);
        }
    }
    // reported without skipping too
    if (launched("adamw non-finite grad, no skip",
                 grad_norm_clip_cuda(t.state, t.table, N_TENSORS, clip_update(0.3, 1.0f, 0), 0))) {
        const lf_grad_norm_state s = read_state(t);
        check_equal("adamw non-finite grad, no skip: found_inf, skip", {(float)s.found_inf, (float)s.skip},
                    {1.0f, 0.0f});
    }
    // a finite step after the skipped ones updates as the CPU's first step
    std::vector<std::vector<float>> g(N_TENSORS);
    float *gp[N_TENSORS];
    for (int i = 0; i < N_TENSORS; i++) {
        g[i] = random_vector(tensor_sizes[i], -1, 1, 4200 + i);
        CHECK_CUDA(cudaMemcpy(t.dg[i], g[i].data(), g[i].size() * 4, cudaMemcpyHostToDevice));
        gp[i] = g[i].data();
    }
    grad_clip(gp, tensor_sizes, N_TENSORS, grad_global_norm(gp, tensor_sizes, N_TENSORS), 0.3);
    for (int i = 0; i < N_TENSORS; i++) {
        lf_adamw_hparams hi = h;
        if (tensor_no_decay[i]) hi.weight_decay = 0.0;
        adamw_update(t.p[i].data(), gp[i], t.m[i].data(), t.v[i].data(), tensor_sizes[i], &hi, 1);
    }
    if (launched("adamw after skipped steps",
                 grad_norm_clip_cuda(t.state, t.table, N_TENSORS, clip_update(0.3, 1.0f, 1), 0)) &&
        launched("adamw after skipped steps", adamw_update_cuda(t.table, N_TENSORS, &h, 1, t.state, 0))) {
        const lf_grad_norm_state s = read_state(t);
        check_equal("adamw after skipped steps: found_inf, skip", {(float)s.found_inf, (float)s.skip},
                    {0.0f, 0.0f});
        compare_trainables(t, "adamw after skipped steps");
    }
    free_trainables(t);
}

int main(void) {
    check_steps(0.0, 0.0, 1.0f, 3, 1, 10);         // no decay, no clipping
    check_steps(0.01, 0.3, 1.0f, 5, 1, 20);        // decay, clipping active (the norm is ~350)
    check_steps(0.001, 1e6, 1.0f, 4, 1, 30);       // clipping inactive (factor 1)
    check_steps(0.01, 0.3, 1.0f / 1024, 3, 1, 40); // loss-scaled gradients, unscaled on the device
    check_steps(0.01, 0.0, 1.0f, 3, 0, 50);        // no state: adamw_update on the plain gradients
    check_nonfinite();
    return check_summary("check_adamw");
}

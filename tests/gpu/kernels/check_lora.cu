// kernels/lora.cu against csrc/ops/lora.c
#include "kernel_check.cuh"
#include "lora.cuh"

extern "C" {
#include "ops/lora.h"
}

struct lora_case {
    int T, C, OC, r;
    float scaling, p;
};

// The f32 results (u, dA, dB) come from the same rounded inputs on both sides, so they are held to
// f32's tolerance in f32 runs and to 1e-4 in 16-bit runs (where only summation order differs, over
// up to 14336 terms); out and dx, of dtype, to the dtype's tolerance.
static double f32_result_tolerance(lf_dtype dt) { return dt == LF_F32 ? tolerance(LF_F32) : 1e-4; }

// v on the device, its first element shift elements past the start of a (16-byte aligned) allocation
static void *shifted(device_buffers &buf, const std::vector<float> &v, int shift, lf_dtype dt) {
    std::vector<float> padded((size_t)shift, 0.0f);
    padded.insert(padded.end(), v.begin(), v.end());
    return (char *)buf.add(to_device(padded, dt)) + (size_t)shift * lf_cuda_dtype_size(dt);
}

// forward and then backward with the outputs in need (dx, dA, dB), against lora_forward/lora_backward;
// shift: x, out, dout and dx placed that many elements past a 16-byte boundary (not 0: no 16-byte packs).
// The forward runs twice on the same out: u must come out the same bits (its sums have a fixed order).
static void check_lora(lf_dtype dt, lora_case k, int need_dx, int need_dA, int need_dB, uint64_t seed,
                       check_key_kind key_kind = FIXED_KEY, int shift = 0) {
    const int T = k.T, C = k.C, OC = k.OC, r = k.r;
    const int64_t xs = (int64_t)T * C, os = (int64_t)T * OC, us = (int64_t)T * r;
    const check_key key = check_key_of(key_kind, seed, 3);
    char what[160], name[200];
    snprintf(what, sizeof what, "T=%d C=%d OC=%d r=%d scaling=%g p=%g%s%s%s%s shift %d", T, C, OC, r,
             k.scaling, k.p, key.label, need_dx ? " dx" : "", need_dA ? " dA" : "", need_dB ? " dB" : "",
             shift);
    std::vector<float> x = rounded(random_vector(xs, -1, 1, seed), dt);
    std::vector<float> A = random_vector((int64_t)r * C, -0.05f, 0.05f, seed + 1);
    std::vector<float> B = random_vector((int64_t)OC * r, -1, 1, seed + 2);
    std::vector<float> out0 = rounded(random_vector(os, -0.5f, 0.5f, seed + 3), dt);
    std::vector<float> dout = rounded(random_vector(os, -1, 1, seed + 4), dt);
    std::vector<float> dx0 = rounded(random_vector(xs, -1, 1, seed + 5), dt);
    std::vector<float> dA0 = random_vector((int64_t)r * C, -1, 1, seed + 6);
    std::vector<float> dB0 = random_vector((int64_t)OC * r, -1, 1, seed + 7);

    std::vector<float> want_out = out0, saved(lora_saved_floats(T, C, r, k.p)), xd((size_t)xs),
                       du((size_t)us);
    lora_forward(want_out.data(), saved.data(), xd.data(), x.data(), A.data(), B.data(), T, C, OC, r,
                 k.scaling, k.p, key.cpu);
    std::vector<float> want_u(saved.begin(), saved.begin() + us); // u leads what the CPU saves
    std::vector<float> want_dx = dx0, want_dA = dA0, want_dB = dB0;
    lora_backward(need_dx ? want_dx.data() : NULL, need_dA ? want_dA.data() : NULL,
                  need_dB ? want_dB.data() : NULL, du.data(), xd.data(), dout.data(), x.data(), saved.data(),
                  A.data(), B.data(), T, C, OC, r, k.scaling, k.p);

    device_buffers buf;
    void *d_x = shifted(buf, x, shift, dt), *d_out = shifted(buf, out0, shift, dt);
    float *d_A = (float *)buf.add(to_device(A, LF_F32)), *d_B = (float *)buf.add(to_device(B, LF_F32));
    float *d_u = (float *)buf.add(device_zeros(us, LF_F32));
    snprintf(name, sizeof name, "lora_forward %s", what);
    if (!launched(name,
                  lora_forward_cuda(d_out, d_u, d_x, d_A, d_B, T, C, OC, r, k.scaling, k.p, key.gpu, dt, 0)))
        return;
    const std::vector<float> got_u = from_device(d_u, us, LF_F32);
    snprintf(name, sizeof name, "lora_forward %s: u", what);
    check_close(name, dt, got_u, want_u, f32_result_tolerance(dt));
    snprintf(name, sizeof name, "lora_forward %s: out", what);
    check_close(name, dt, from_device(d_out, os, dt), want_out, tolerance(dt));
    snprintf(name, sizeof name, "lora_forward %s, again", what);
    if (!launched(name,
                  lora_forward_cuda(d_out, d_u, d_x, d_A, d_B, T, C, OC, r, k.scaling, k.p, key.gpu, dt, 0)))
        return;
    snprintf(name, sizeof name, "lora_forward %s, again: u", what);
    check_equal(name, from_device(d_u, us, LF_F32), got_u);

    void *d_dout = shifted(buf, dout, shift, dt), *d_dx = shifted(buf, dx0, shift, dt);
    float *d_dA = (float *)buf.add(to_device(dA0, LF_F32)), *d_dB = (float *)buf.add(to_device(dB0, LF_F32));
    void *scratch = NULL;
    CHECK_CUDA(cudaMalloc(&scratch, lora_scratch_bytes(T, C, r, 1)));
    buf.add(scratch);
    snprintf(name, sizeof name, "lora_backward %s", what);
    if (!launched(name, lora_backward_cuda(need_dx ? d_dx : NULL, need_dA ? d_dA : NULL,
                                           need_dB ? d_dB : NULL, scratch, d_dout, d_x, d_u, d_A, d_B, T, C,
                                           OC, r, k.scaling, k.p, key.gpu, dt, 0)))
        return;
    if (need_dx) {
        snprintf(name, sizeof name, "lora_backward %s: dx", what);
        check_close(name, dt, from_device(d_dx, xs, dt), want_dx, tolerance(dt));
    }
    if (need_dA) {
        snprintf(name, sizeof name, "lora_backward %s: dA", what);
        check_close(name, dt, from_device(d_dA, (int64_t)r * C, LF_F32), want_dA, f32_result_tolerance(dt));
    }
    if (need_dB) {
        snprintf(name, sizeof name, "lora_backward %s: dB", what);
        check_close(name, dt, from_device(d_dB, (int64_t)OC * r, LF_F32), want_dB, f32_result_tolerance(dt));
    }
}

// The dropout mask alone, exactly: with r = C, A = the identity and scaling 1, u = dropout(x), so u
// is the CPU's dropout of x element for element.
static void check_lora_mask(lf_dtype dt, check_key key) {
    const int T = 45, C = 40, OC = 8, r = C;
    const float p = 0.3f;
    std::vector<float> x = rounded(random_vector((int64_t)T * C, 0.5f, 1.5f, 78), dt);
    std::vector<float> A((size_t)r * C, 0.0f), B = random_vector((int64_t)OC * r, -1, 1, 79);
    for (int j = 0; j < r; j++)
        A[(size_t)j * C + j] = 1.0f;
    std::vector<float> out((size_t)T * OC, 0.0f), saved(lora_saved_floats(T, C, r, p)), xd((size_t)T * C);
    lora_forward(out.data(), saved.data(), xd.data(), x.data(), A.data(), B.data(), T, C, OC, r, 1.0f, p,
                 key.cpu);
    std::vector<float> want_u(saved.begin(), saved.begin() + (size_t)T * r);
    device_buffers buf;
    void *d_x = buf.add(to_device(x, dt)), *d_out = buf.add(device_zeros((int64_t)T * OC, dt));
    float *d_A = (float *)buf.add(to_device(A, LF_F32)), *d_B = (float *)buf.add(to_device(B, LF_F32));
    float *d_u = (float *)buf.add(device_zeros((int64_t)T * r, LF_F32));
    if (launched("lora_forward mask",
                 lora_forward_cuda(d_out, d_u, d_x, d_A, d_B, T, C, OC, r, 1.0f, p, key.gpu, dt, 0))) {
        char what[80];
        snprintf(what, sizeof what, "lora dropout mask [%s]%s", dtype_label(dt), key.label);
        check_equal(what, from_device(d_u, (int64_t)T * r, LF_F32), want_u);
    }
}

// The kernels take the ranks 4 at a time (r <= 4) or 16 at a time, tokens 2 (r <= 4) or 4 per block with
// the columns split over the block's threads in 16-byte packs (u, du), out's columns a pack per thread, dx's
// and dA's and dB's columns a thread each in chunks of 256, and the sums over tokens in at most 32 groups
// of a multiple of 32 tokens (dA, dB): the cases cover one and several steps of each, and rows that are
// not whole packs (C or OC not a multiple of 8).
static const lora_case cases[] = {
    {37, 1024, 1024, 2, 8.0f, 0.1f},    // RoBERTa-large query/value, r=2, alpha 16
    {256, 1024, 1024, 2, 8.0f, 0.0f},   // no dropout
    {1, 4096, 4096, 16, 1.0f, 0.05f},   // Llama-2 q_proj, one token
    {100, 4096, 1024, 16, 1.0f, 0.1f},  // Mistral v_proj (grouped KV heads)
    {33, 1000, 384, 70, 0.5f, 0.1f},    // r above one step of ranks, odd sizes
    {129, 384, 1000, 3, 2.0f, 0.0f},    // rows one past a multiple of 128
    {300, 14336, 4096, 16, 2.0f, 0.1f}, // down_proj-sized rows
    {50, 300, 200, 1, 4.0f, 0.2f},      // r = 1
    {70, 512, 640, 64, 0.25f, 0.1f},    // r = 64: four steps of ranks
    {61, 257, 255, 5, 1.0f, 0.1f},      // r one past a step of 4, columns one past / short of 256
    {1500, 96, 80, 17, 0.5f, 0.1f},     // over 32 * 32 tokens: groups of 64, r one past 16
    {8, 31, 17, 4, 3.0f, 0.3f},         // one tile of tokens, fewer columns than a warp
    {7, 4096, 4096, 16, 2.0f, 0.1f},    // Mistral q_proj, r=16, tokens one short of two blocks of 4
    {5, 1024, 1024, 2, 8.0f, 0.1f},     // RoBERTa r=2, tokens one past two blocks of 2
    {9, 1027, 1021, 2, 8.0f, 0.1f},     // C and OC not multiples of a pack (4 or 8 elements)
};

// A group of branches over one x, as a layer's q|k|v: branch k's out and dout are columns [col_k, col_k +
// OC_k) of one (T, ld) buffer (the columns between the branches, k's, left alone), each branch with its own
// dropout stream; the forward in one launch and the backward in two against lora_forward / lora_backward per
// branch, dx the sum of the branches' (the CPU adds them one after the other).
struct group_case {
    int T, C, r, n, OC[LORA_MAX_BRANCHES], col[LORA_MAX_BRANCHES], ld;
    float scaling, p;
};

static void check_lora_group(lf_dtype dt, group_case k, int need_dx, uint64_t seed, check_key_kind key_kind) {
    const int T = k.T, C = k.C, r = k.r, n = k.n;
    const int64_t xs = (int64_t)T * C, ws = (int64_t)T * k.ld;
    char what[160], name[220];
    snprintf(what, sizeof what, "group of %d: T=%d C=%d r=%d ld=%d p=%g%s%s", n, T, C, r, k.ld, k.p,
             need_dx ? " dx" : "", key_kind == DEVICE_KEY ? " device keys" : "");
    std::vector<float> x = rounded(random_vector(xs, -1, 1, seed), dt);
    std::vector<float> wide0 = rounded(random_vector(ws, -0.5f, 0.5f, seed + 1), dt);
    std::vector<float> dwide = rounded(random_vector(ws, -1, 1, seed + 2), dt);
    std::vector<float> dx0 = rounded(random_vector(xs, -1, 1, seed + 3), dt);
    std::vector<float> want_wide = wide0, want_dx = dx0;
    device_buffers buf;
    void *d_x = buf.add(to_device(x, dt)), *d_wide = buf.add(to_device(wide0, dt));
    void *d_dwide = buf.add(to_device(dwide, dt)), *d_dx = buf.add(to_device(dx0, dt));
    lora_branch fwd[LORA_MAX_BRANCHES], bwd[LORA_MAX_BRANCHES];
    std::vector<float> A[LORA_MAX_BRANCHES], B[LORA_MAX_BRANCHES], u[LORA_MAX_BRANCHES],
        dA[LORA_MAX_BRANCHES], dB[LORA_MAX_BRANCHES];
    size_t E = lf_cuda_dtype_size(dt);
    for (int b = 0; b < n; b++) {
        const int OC = k.OC[b];
        const check_key key = check_key_of(key_kind, seed + 10 + b, 3 + b);
        A[b] = random_vector((int64_t)r * C, -0.05f, 0.05f, seed + 20 + b);
        B[b] = random_vector((int64_t)OC * r, -1, 1, seed + 30 + b);
        dA[b] = random_vector((int64_t)r * C, -1, 1, seed + 40 + b);
        dB[b] = random_vector((int64_t)OC * r, -1, 1, seed + 50 + b);
        // the CPU on branch b's columns, copied out of and back into the wide rows
        std::vector<float> out((size_t)T * OC), dout((size_t)T * OC), xd((size_t)xs), du((size_t)T * r);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < OC; c++) {
                out[(size_t)t * OC + c] = want_wide[(size_t)t * k.ld + k.col[b] + c];
                dout[(size_t)t * OC + c] = dwide[(size_t)t * k.ld + k.col[b] + c];
            }
        u[b].resize(lora_saved_floats(T, C, r, k.p)); // u, then the CPU's mask bits
        lora_forward(out.data(), u[b].data(), xd.data(), x.data(), A[b].data(), B[b].data(), T, C, OC, r,
                     k.scaling, k.p, key.cpu);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < OC; c++)
                want_wide[(size_t)t * k.ld + k.col[b] + c] = out[(size_t)t * OC + c];
        float *d_A = (float *)buf.add(to_device(A[b], LF_F32)),
              *d_B = (float *)buf.add(to_device(B[b], LF_F32));
        float *d_u = (float *)buf.add(device_zeros((int64_t)T * r, LF_F32));
        float *d_dA = (float *)buf.add(to_device(dA[b], LF_F32));
        float *d_dB = (float *)buf.add(to_device(dB[b], LF_F32));
        lora_backward(need_dx ? want_dx.data() : NULL, dA[b].data(), dB[b].data(), du.data(), xd.data(),
                      dout.data(), x.data(), u[b].data(), A[b].data(), B[b].data(), T, C, OC, r, k.scaling,
                      k.p);
        fwd[b] = {d_A, d_B, d_u, (char *)d_wide + (size_t)k.col[b] * E, k.ld, OC, key.gpu, NULL, NULL};
        bwd[b] = {d_A, d_B, d_u, (char *)d_dwide + (size_t)k.col[b] * E, k.ld, OC, key.gpu, d_dA, d_dB};
    }
    snprintf(name, sizeof name, "lora_group_forward %s", what);
    if (!launched(name, lora_group_forward_cuda(fwd, n, d_x, T, C, r, k.scaling, k.p, dt, 0))) return;
    snprintf(name, sizeof name, "lora_group_forward %s: out (and the columns between)", what);
    check_close(name, dt, from_device(d_wide, ws, dt), want_wide, tolerance(dt));
    for (int b = 0; b < n; b++) {
        snprintf(name, sizeof name, "lora_group_forward %s: u of branch %d", what, b);
        std::vector<float> want_u(u[b].begin(), u[b].begin() + (size_t)T * r);
        check_close(name, dt, from_device(fwd[b].u, (int64_t)T * r, LF_F32), want_u, f32_result_tolerance(dt));
    }
    void *scratch = NULL;
    CHECK_CUDA(cudaMalloc(&scratch, lora_scratch_bytes(T, C, r, n)));
    buf.add(scratch);
    snprintf(name, sizeof name, "lora_group_backward %s", what);
    if (!launched(name, lora_group_backward_cuda(bwd, n, need_dx ? d_dx : NULL, scratch, d_x, T, C, r,
                                                 k.scaling, k.p, dt, 0)))
        return;
    snprintf(name, sizeof name, "lora_group_backward %s: dx", what);
    check_close(name, dt, from_device(d_dx, xs, dt), want_dx, tolerance(dt));
    snprintf(name, sizeof name, "lora_group_backward %s: d wide (not written)", what);
    check_equal(name, from_device(d_dwide, ws, dt), dwide);
    for (int b = 0; b < n; b++) {
        snprintf(name, sizeof name, "lora_group_backward %s: dA of branch %d", what, b);
        check_close(name, dt, from_device(bwd[b].dA, (int64_t)r * C, LF_F32), dA[b],
                    f32_result_tolerance(dt));
        snprintf(name, sizeof name, "lora_group_backward %s: dB of branch %d", what, b);
        check_close(name, dt, from_device(bwd[b].dB, (int64_t)k.OC[b] * r, LF_F32), dB[b],
                    f32_result_tolerance(dt));
    }
}

// q and v of a fused q|k|v (k's columns between them), gate|up, three branches of unequal widths, rows not
// whole packs (ld odd), more tokens than one group of the sums over tokens; C up to 1024 runs the backward in
// one launch, C = 1100 in two
static const group_case group_cases[] = {
    {37, 1024, 2, 2, {1024, 1024}, {0, 2048}, 3072, 8.0f, 0.1f},    // RoBERTa-large q|k|v, q and v
    {9, 512, 16, 2, {512, 128}, {0, 640}, 768, 2.0f, 0.1f},         // Mistral-like q|k|v (GQA), r = 16
    {70, 256, 3, 3, {256, 64, 64}, {0, 256, 320}, 384, 1.0f, 0.2f}, // all of q, k, v
    {45, 300, 2, 2, {600, 600}, {0, 600}, 1200, 4.0f, 0.0f},        // gate|up, no dropout
    {33, 97, 5, 3, {41, 17, 40}, {3, 50, 68}, 111, 0.5f, 0.3f},     // odd widths and row stride
    {1100, 64, 2, 2, {64, 32}, {0, 96}, 128, 8.0f, 0.1f},           // over 32 groups of 32 tokens
    {20, 1100, 2, 2, {300, 200}, {0, 400}, 700, 2.0f, 0.1f},        // C past 4 chunks of 256: two launches
};

int main(void) {
    uint64_t seed = 500;
    for (lf_dtype dt : check_dtypes) {
        int i = 0;
        for (const lora_case &k : cases) {
            check_lora(dt, k, 1, 1, 1, seed += 10);
            if (i % 4 == 0) check_lora(dt, k, 0, 1, 1, seed += 10); // frozen input (first layer)
            if (i % 4 == 1) check_lora(dt, k, 1, 0, 1, seed += 10);
            if (i % 4 == 2) check_lora(dt, k, 0, 0, 1, seed += 10);
            if (i % 4 == 3) check_lora(dt, k, 1, 1, 0, seed += 10);
            i++;
        }
        check_lora_mask(dt, check_key_of(FIXED_KEY, 77, 5));
        check_lora_mask(dt, check_key_of(DEVICE_KEY, 77, 5));
        check_lora(dt, cases[7], 1, 1, 1, seed += 10, DEVICE_KEY);
        check_lora(dt, cases[5], 1, 1, 1, seed += 10, UNREADABLE_KEY); // p = 0
        check_lora(dt, cases[13], 1, 1, 1, seed += 10, FIXED_KEY, 1);  // rows of whole packs, misaligned
        int g = 0;
        for (const group_case &k : group_cases) {
            check_lora_group(dt, k, g % 2 == 0, seed += 100, g % 3 == 2 ? DEVICE_KEY : FIXED_KEY);
            g++;
        }
    }
    return check_summary("check_lora");
}

// kernels/attention.cu against csrc/ops/attention.c: packed sequences of very different lengths
// (empty and one-token ones too), grouped-query heads, causal mask, sliding window, dropout,
// every head size; out and lse of forward, dq, dk, dv of backward (and their accumulation), inputs
// 16-byte aligned (read 16 bytes at once) and not (one element at a time), that sequences never see
// each other, and the sizes the launchers refuse.
#include <algorithm>
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "attention.cuh"
#include "kernel_check.cuh"

extern "C" {
#include "ops/attention.h"
}

struct attention_case {
    const char *name;
    std::vector<int> lens; // sequence lengths, packed in this order
    int NH, NKV, HD, causal, window;
    float dropout;
    int max_len;     // passed to the launchers; 0: the longest sequence
    float grad_init; // dq, dk, dv start uniform in +-grad_init (0: zeros)
};

static const attention_case cases[] = {
    // one key per query (first and last case): dq = dk = 0 up to rounding, so they are checked added
    // to random values
    {"one token", {1}, 2, 2, 32, 0, 0, 0.0f, 0, 1.0f},
    {"encoder hd64", {1, 7, 64, 65, 200}, 4, 4, 64, 0, 0, 0.0f, 0, 0.0f},
    {"encoder hd32 dropout", {1, 7, 64, 65, 200}, 12, 12, 32, 0, 0, 0.1f, 0, 0.0f},
    {"gqa hd128 causal", {1, 7, 64, 65, 200}, 8, 2, 128, 1, 0, 0.0f, 0, 0.0f},
    {"gqa hd128 causal window16", {200, 65, 1, 64, 7}, 8, 2, 128, 1, 16, 0.0f, 0, 0.0f},
    {"gqa hd64 causal window16 dropout", {1, 7, 64, 65, 200}, 8, 2, 64, 1, 16, 0.1f, 0, 0.0f},
    {"hd128 causal dropout", {200, 7}, 4, 4, 128, 1, 0, 0.1f, 0, 0.0f},
    {"hd80 window16 dropout empty sequences", {0, 33, 100, 0}, 3, 1, 80, 0, 16, 0.1f, 0, 0.0f},
    {"gqa hd96 causal window100", {97, 31, 130}, 4, 2, 96, 1, 100, 0.0f, 0, 0.0f},
    {"one long sequence max_len 1", {300}, 2, 1, 128, 1, 0, 0.1f, 1, 0.0f},
    {"roberta-large heads dropout", {512, 300, 3}, 16, 16, 64, 0, 0, 0.1f, 0, 0.0f},
    {"one-token sequences wide window", {1, 1, 1}, 4, 1, 64, 1, 4096, 0.0f, 0, 1.0f},
};

static std::vector<int32_t> offsets_of(const std::vector<int> &lens) {
    std::vector<int32_t> off(1, 0);
    for (int n : lens)
        off.push_back(off.back() + n);
    return off;
}

static int32_t *device_offsets(const std::vector<int32_t> &off) {
    int32_t *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, off.size() * sizeof(int32_t)));
    CHECK_CUDA(cudaMemcpy(d, off.data(), off.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return d;
}

// attention_backward_cuda's scratch for T tokens of NH heads of HD: the dq sums zero, as the launcher takes
// them, the rest NaN (the launcher must not rely on it being zeroed)
static void *device_scratch(size_t bytes, int T, int NH, int HD) {
    void *d = NULL;
    const size_t zeroed = (size_t)T * NH * HD * sizeof(float);
    CHECK_CUDA(cudaMalloc(&d, bytes > 0 ? bytes : 1));
    CHECK_CUDA(cudaMemset(d, 0xff, bytes));
    CHECK_CUDA(cudaMemset(d, 0, zeroed < bytes ? zeroed : bytes));
    return d;
}

// the dq sums of scratch zero again after a backward, as the next backward takes them
static void check_scratch_left_zero(const char *what, void *scratch, int T, int NH, int HD) {
    const int64_t n = (int64_t)T * NH * HD;
    check_equal(what, from_device(scratch, n, LF_F32), std::vector<float>((size_t)n, 0.0f));
}

// x on the device `shift` elements past a 16-byte aligned allocation (shift 1: not 16-byte aligned)
static void *to_device_at(const std::vector<float> &x, lf_dtype dt, int shift) {
    std::vector<float> padded((size_t)shift, 0.0f);
    padded.insert(padded.end(), x.begin(), x.end());
    return (char *)to_device(padded, dt) + (size_t)shift * lf_cuda_dtype_size(dt);
}

static int longest(const std::vector<int> &lens) {
    int n = 1;
    for (int x : lens)
        n = x > n ? x : n;
    return n;
}

// the rows of q: (T, C), k, v: (T, KC) side by side in one (T, ld) matrix, as a fused q|k|v product
// writes them (columns from C + 2 KC on: fill)
static std::vector<float> side_by_side(const std::vector<float> &q, const std::vector<float> &k,
                                       const std::vector<float> &v, int T, int C, int KC, int ld,
                                       float fill) {
    std::vector<float> w((size_t)T * ld, fill);
    for (int t = 0; t < T; t++) {
        std::copy(q.begin() + (size_t)t * C, q.begin() + (size_t)(t + 1) * C, w.begin() + (size_t)t * ld);
        std::copy(k.begin() + (size_t)t * KC, k.begin() + (size_t)(t + 1) * KC,
                  w.begin() + (size_t)t * ld + C);
        std::copy(v.begin() + (size_t)t * KC, v.begin() + (size_t)(t + 1) * KC,
                  w.begin() + (size_t)t * ld + C + KC);
    }
    return w;
}

// shift: the device's q, k, v, dout and out start that many elements past a 16-byte boundary. pad >= 0:
// q, k, v and their gradients are the column ranges of one (T, C + 2 KC + pad) matrix each (a fused
// q|k|v product's), the pad columns left as they were
static void check_attention_case(const attention_case &c, lf_dtype dt, uint64_t seed,
                                 check_key_kind key_kind = FIXED_KEY, int shift = 0, int pad = -1) {
    std::vector<int32_t> off = offsets_of(c.lens);
    int B = (int)c.lens.size(), T = off[B], C = c.NH * c.HD, KC = c.NKV * c.HD;
    int max_len = c.max_len ? c.max_len : longest(c.lens);
    check_key key = check_key_of(key_kind, seed, 99);
    attention_shape s = {B, c.NH, c.NKV, c.HD, c.causal, c.window, c.dropout, key.cpu};
    std::vector<float> q = rounded(random_vector((int64_t)T * C, -1, 1, seed * 8 + 1), dt);
    std::vector<float> k = rounded(random_vector((int64_t)T * KC, -1, 1, seed * 8 + 2), dt);
    std::vector<float> v = rounded(random_vector((int64_t)T * KC, -1, 1, seed * 8 + 3), dt);
    std::vector<float> scratch(attention_scratch_floats(T, omp_get_max_threads()));
    std::vector<float> out((size_t)T * C), lse((size_t)T * c.NH);
    attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), off.data(), s, scratch.data());

    int32_t *doff = device_offsets(off);
    const int ld = pad >= 0 ? C + 2 * KC + pad : 0, ldq = pad >= 0 ? ld : C, ldkv = pad >= 0 ? ld : KC;
    const size_t E = lf_cuda_dtype_size(dt);
    void *dq_in = NULL, *dk_in = NULL, *dv_in = NULL;
    if (pad >= 0) {
        dq_in = to_device_at(side_by_side(q, k, v, T, C, KC, ld, 7.0f), dt, shift);
        dk_in = (char *)dq_in + (size_t)C * E, dv_in = (char *)dq_in + (size_t)(C + KC) * E;
    } else {
        dq_in = to_device_at(q, dt, shift), dk_in = to_device_at(k, dt, shift),
        dv_in = to_device_at(v, dt, shift);
    }
    void *dout = device_nans((int64_t)T * C, dt);
    float *dlse = (float *)device_nans((int64_t)T * c.NH, LF_F32);
    CHECK_CUDA(attention_forward_cuda(dout, dlse, dq_in, dk_in, dv_in, ldq, ldkv, doff, T, max_len, s,
                                      key.gpu, dt, 0));
    char what[200], name[120];
    snprintf(name, sizeof name, "%s%s%s", c.name, shift ? " misaligned" : "", pad >= 0 ? " fused q|k|v" : "");
    snprintf(what, sizeof what, "attention_forward %s%s: out", name, key.label);
    check_close(what, dt, from_device(dout, (int64_t)T * C, dt), out, tolerance(dt));
    snprintf(what, sizeof what, "attention_forward %s%s: lse (f32)", name, key.label);
    check_close(what, dt, from_device(dlse, (int64_t)T * c.NH, LF_F32), lse, tolerance(LF_F32));

    // backward from the CPU's out (as the GPU stores it) and lse, so its check stands alone
    std::vector<float> gout = rounded(random_vector((int64_t)T * C, -1, 1, seed * 8 + 4), dt);
    std::vector<float> out_seen = rounded(out, dt);
    std::vector<float> dq((size_t)T * C), dk((size_t)T * KC), dv((size_t)T * KC);
    if (c.grad_init > 0) {
        dq = rounded(random_vector((int64_t)T * C, -c.grad_init, c.grad_init, seed * 8 + 5), dt);
        dk = rounded(random_vector((int64_t)T * KC, -c.grad_init, c.grad_init, seed * 8 + 6), dt);
        dv = rounded(random_vector((int64_t)T * KC, -c.grad_init, c.grad_init, seed * 8 + 7), dt);
    }
    void *ddq = NULL, *ddk = NULL, *ddv = NULL;
    if (pad >= 0) {
        ddq = to_device(side_by_side(dq, dk, dv, T, C, KC, ld, 3.0f), dt);
        ddk = (char *)ddq + (size_t)C * E, ddv = (char *)ddq + (size_t)(C + KC) * E;
    } else {
        ddq = to_device(dq, dt), ddk = to_device(dk, dt), ddv = to_device(dv, dt);
    }
    void *dgout = to_device_at(gout, dt, shift), *dout_seen = to_device_at(out_seen, dt, shift);
    float *dlse_seen = (float *)to_device(lse, LF_F32);
    void *dscratch = device_scratch(attention_scratch_bytes(T, c.NH, c.NKV, c.HD), T, c.NH, c.HD);
    for (int pass = 0; pass < 2; pass++) { // the second pass adds the same gradients again: +=
        attention_backward(dq.data(), dk.data(), dv.data(), 1, gout.data(), out_seen.data(), lse.data(),
                           q.data(), k.data(), v.data(), off.data(), s, scratch.data());
        CHECK_CUDA(attention_backward_cuda(ddq, ddk, ddv, 1, dgout, dout_seen, dlse_seen, dq_in, dk_in, dv_in,
                                           ldq, ldkv, doff, T, max_len, s, key.gpu, dscratch, dt, 0));
        const char *label = pass ? " accumulated" : "";
        snprintf(what, sizeof what, "attention_backward %s%s: scratch's dq sums left zero%s", name, key.label,
                 label);
        check_scratch_left_zero(what, dscratch, T, c.NH, c.HD);
        if (pad >= 0) { // the gradients in their columns, the pad's 3.0 untouched
            snprintf(what, sizeof what, "attention_backward %s%s: dq|dk|dv%s", name, key.label, label);
            check_close(what, dt, from_device(ddq, (int64_t)T * ld, dt),
                        side_by_side(dq, dk, dv, T, C, KC, ld, 3.0f), tolerance(dt));
            continue;
        }
        snprintf(what, sizeof what, "attention_backward %s%s: dq%s", name, key.label, label);
        check_close(what, dt, from_device(ddq, (int64_t)T * C, dt), dq, tolerance(dt));
        snprintf(what, sizeof what, "attention_backward %s%s: dk%s", name, key.label, label);
        check_close(what, dt, from_device(ddk, (int64_t)T * KC, dt), dk, tolerance(dt));
        snprintf(what, sizeof what, "attention_backward %s%s: dv%s", name, key.label, label);
        check_close(what, dt, from_device(ddv, (int64_t)T * KC, dt), dv, tolerance(dt));
    }
}

// rows [lo, hi) of a (T, width) matrix left out: the rows of every other sequence
static std::vector<float> rows_outside(const std::vector<float> &x, int width, int lo, int hi) {
    std::vector<float> kept;
    for (size_t r = 0; r < x.size() / width; r++)
        if ((int)r < lo || (int)r >= hi)
            kept.insert(kept.end(), x.begin() + r * width, x.begin() + (r + 1) * width);
    return kept;
}

// Changing q, k, v of one sequence leaves out and lse of the others, and their dk and dv,
// bit for bit as they were (dq is summed with atomics, so its last bits may vary run to run).
static void check_isolation(lf_dtype dt) {
    std::vector<int> lens = {7, 64, 65, 200};
    std::vector<int32_t> off = offsets_of(lens);
    int B = (int)lens.size(), T = off[B], NH = 4, NKV = 2, HD = 64, C = NH * HD, KC = NKV * HD;
    int lo = off[1], hi = off[2]; // sequence 1 is changed
    attention_shape s = {B, NH, NKV, HD, 0, 0, 0.1f, lf_stream_key(5, 99)};
    std::vector<float> q = random_vector((int64_t)T * C, -1, 1, 61),
                       k = random_vector((int64_t)T * KC, -1, 1, 62);
    std::vector<float> v = random_vector((int64_t)T * KC, -1, 1, 63),
                       g = random_vector((int64_t)T * C, -1, 1, 64);
    int32_t *doff = device_offsets(off);
    void *dg = to_device(g, dt),
         *dscratch = device_scratch(attention_scratch_bytes(T, NH, NKV, HD), T, NH, HD);
    std::vector<float> seen[2][4]; // per run: out, lse, dk, dv
    for (int run = 0; run < 2; run++) {
        if (run == 1) {
            std::vector<float> q2 = random_vector((int64_t)T * C, -3, 3, 71),
                               k2 = random_vector((int64_t)T * KC, -3, 3, 72);
            std::vector<float> v2 = random_vector((int64_t)T * KC, -3, 3, 73);
            std::copy(q2.begin() + (size_t)lo * C, q2.begin() + (size_t)hi * C, q.begin() + (size_t)lo * C);
            std::copy(k2.begin() + (size_t)lo * KC, k2.begin() + (size_t)hi * KC,
                      k.begin() + (size_t)lo * KC);
            std::copy(v2.begin() + (size_t)lo * KC, v2.begin() + (size_t)hi * KC,
                      v.begin() + (size_t)lo * KC);
        }
        void *dq_in = to_device(q, dt), *dk_in = to_device(k, dt), *dv_in = to_device(v, dt);
        void *dout = device_nans((int64_t)T * C, dt);
        float *dlse = (float *)device_nans((int64_t)T * NH, LF_F32);
        void *ddq = device_zeros((int64_t)T * C, dt), *ddk = device_zeros((int64_t)T * KC, dt);
        void *ddv = device_zeros((int64_t)T * KC, dt);
        lf_cuda_key key = lf_cuda_fixed_key(s.key);
        CHECK_CUDA(
            attention_forward_cuda(dout, dlse, dq_in, dk_in, dv_in, C, KC, doff, T, 200, s, key, dt, 0));
        CHECK_CUDA(attention_backward_cuda(ddq, ddk, ddv, 1, dg, dout, dlse, dq_in, dk_in, dv_in, C, KC, doff,
                                           T, 200, s, key, dscratch, dt, 0));
        seen[run][0] = rows_outside(from_device(dout, (int64_t)T * C, dt), C, lo, hi);
        seen[run][1] = rows_outside(from_device(dlse, (int64_t)T * NH, LF_F32), NH, lo, hi);
        seen[run][2] = rows_outside(from_device(ddk, (int64_t)T * KC, dt), KC, lo, hi);
        seen[run][3] = rows_outside(from_device(ddv, (int64_t)T * KC, dt), KC, lo, hi);
    }
    const char *names[4] = {"out", "lse", "dk", "dv"};
    for (int x = 0; x < 4; x++) {
        char what[120];
        snprintf(what, sizeof what, "attention isolation [%s]: %s of other sequences", dtype_label(dt),
                 names[x]);
        check_equal(what, seen[1][x], seen[0][x]);
    }
}

static std::vector<float> first(const std::vector<float> &x, int64_t n) {
    return std::vector<float>(x.begin(), x.begin() + n);
}

// A sequence appended to a batch (how the runtime pads a batch to a captured step's shape) leaves the
// dropout masks of the others, so their out, lse, dq, dk, dv, as they were: on the CPU bit for bit, on
// the GPU with the key read on the device bit for bit but dq (summed with atomics: close).
static void check_trailing_sequence(lf_dtype dt) {
    const std::vector<int> lens[2] = {{7, 64, 65}, {7, 64, 65, 90}}; // without and with the appended one
    const int NH = 4, NKV = 2, HD = 64, C = NH * HD, KC = NKV * HD;
    const check_key key = check_key_of(DEVICE_KEY, 8, 99);
    const int Tr = offsets_of(lens[0]).back(), Tg = offsets_of(lens[1]).back();
    std::vector<float> q = rounded(random_vector((int64_t)Tg * C, -1, 1, 81), dt);
    std::vector<float> k = rounded(random_vector((int64_t)Tg * KC, -1, 1, 82), dt);
    std::vector<float> v = rounded(random_vector((int64_t)Tg * KC, -1, 1, 83), dt);
    std::vector<float> g = rounded(random_vector((int64_t)Tg * C, -1, 1, 84), dt);
    const int64_t real[5] = {(int64_t)Tr * C, (int64_t)Tr * NH, (int64_t)Tr * C, (int64_t)Tr * KC,
                             (int64_t)Tr * KC};
    std::vector<float> seen[2][2][5]; // [CPU, GPU][without, with]: out, lse, dq, dk, dv of the real rows
    for (int run = 0; run < 2; run++) {
        std::vector<int32_t> off = offsets_of(lens[run]);
        const int B = (int)lens[run].size(), T = off[B];
        attention_shape s = {B, NH, NKV, HD, 0, 0, 0.1f, key.cpu};
        std::vector<float> out((size_t)T * C), lse((size_t)T * NH), dq((size_t)T * C), dk((size_t)T * KC),
            dv((size_t)T * KC), scratch(attention_scratch_floats(T, omp_get_max_threads()));
        attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), off.data(), s,
                          scratch.data());
        attention_backward(dq.data(), dk.data(), dv.data(), 1, g.data(), out.data(), lse.data(), q.data(),
                           k.data(), v.data(), off.data(), s, scratch.data());
        const std::vector<float> *cpu[5] = {&out, &lse, &dq, &dk, &dv};
        for (int x = 0; x < 5; x++)
            seen[0][run][x] = first(*cpu[x], real[x]);

        device_buffers b;
        int32_t *doff = (int32_t *)b.add(device_offsets(off));
        void *dq_in = b.add(to_device(q, dt)), *dk_in = b.add(to_device(k, dt)),
             *dv_in = b.add(to_device(v, dt));
        void *dg = b.add(to_device(g, dt)), *dout = b.add(device_nans((int64_t)T * C, dt));
        float *dlse = (float *)b.add(device_nans((int64_t)T * NH, LF_F32));
        // written (accumulate 0): the NaN the buffers hold is never read
        void *ddq = b.add(device_nans((int64_t)T * C, dt)), *ddk = b.add(device_nans((int64_t)T * KC, dt));
        void *ddv = b.add(device_nans((int64_t)T * KC, dt));
        void *dscratch = b.add(device_scratch(attention_scratch_bytes(T, NH, NKV, HD), T, NH, HD));
        const int max_len = longest(lens[run]);
        CHECK_CUDA(attention_forward_cuda(dout, dlse, dq_in, dk_in, dv_in, C, KC, doff, T, max_len, s,
                                          key.gpu, dt, 0));
        CHECK_CUDA(attention_backward_cuda(ddq, ddk, ddv, 0, dg, dout, dlse, dq_in, dk_in, dv_in, C, KC, doff,
                                           T, max_len, s, key.gpu, dscratch, dt, 0));
        const void *gpu[5] = {dout, dlse, ddq, ddk, ddv};
        for (int x = 0; x < 5; x++)
            seen[1][run][x] = from_device(gpu[x], real[x], x == 1 ? LF_F32 : dt);
    }
    const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
    for (int side = 0; side < 2; side++)
        for (int x = 0; x < 5; x++) {
            char what[160];
            snprintf(what, sizeof what, "attention %s [%s]%s: %s of the real tokens with a sequence appended",
                     side ? "GPU" : "CPU", dtype_label(dt), side ? key.label : "", names[x]);
            if (side == 1 && x == 2)
                check_close(what, dt, seen[side][1][x], seen[side][0][x], tolerance(dt));
            else
                check_equal(what, seen[side][1][x], seen[side][0][x]);
        }
}

// Sizes the launchers cannot run come back as cudaErrorInvalidValue, before any launch;
// no tokens is a no-op.
static void check_rejects(void) {
    std::vector<int32_t> off = {0, 8};
    int32_t *doff = device_offsets(off);
    void *x = device_zeros(8 * 8 * 128, LF_F32), *scratch = device_zeros(8 * 8 * 129, LF_F32);
    float *l = (float *)device_zeros(8 * 8, LF_F32);
    attention_shape ok = {1, 4, 2, 64, 1, 0, 0.0f, 0};
    attention_shape head48 = ok, groups = ok, dropout1 = ok;
    head48.HD = 48, groups.NKV = 3, dropout1.dropout = 1.0f;
    auto fwd = [&](attention_shape s, int T, int max_len, lf_dtype dt) {
        return (float)attention_forward_cuda(x, l, x, x, x, 256, 128, doff, T, max_len, s,
                                             lf_cuda_fixed_key(0), dt, 0);
    };
    auto bwd = [&](attention_shape s, int T, int max_len, lf_dtype dt) {
        return (float)attention_backward_cuda(x, x, x, 1, x, x, l, x, x, x, 256, 128, doff, T, max_len, s,
                                              lf_cuda_fixed_key(0), scratch, dt, 0);
    };
    float invalid = (float)cudaErrorInvalidValue;
    std::vector<float> got = {
        fwd(head48, 8, 8, LF_F32),   bwd(head48, 8, 8, LF_F32),   fwd(groups, 8, 8, LF_F32),
        bwd(groups, 8, 8, LF_F32),   fwd(dropout1, 8, 8, LF_F32), bwd(dropout1, 8, 8, LF_F32),
        fwd(ok, 8, 0, LF_F32),       bwd(ok, 8, 0, LF_F32),       fwd(ok, 8, 8, (lf_dtype)99),
        bwd(ok, 8, 8, (lf_dtype)99), fwd(ok, 0, 0, LF_F32),       bwd(ok, 0, 0, LF_F32)};
    std::vector<float> want(10, invalid);
    want.push_back(0.0f), want.push_back(0.0f);
    check_equal("attention launchers refuse head size 48, NH % NKV, dropout 1, max_len 0, bad dtype", got,
                want);
    CHECK_CUDA(cudaDeviceSynchronize());
}

int main(void) {
    check_rejects();
    int dti = 0;
    for (lf_dtype dt : check_dtypes) {
        int ci = 0;
        for (attention_case c : cases) {
            while (emulated() && (int64_t)offsets_of(c.lens).back() * c.NH > 4096 && c.NKV % 2 == 0)
                c.NH /= 2, c.NKV /= 2; // fewer heads of a long batch under the (slow) emulator
            check_attention_case(c, dt, (uint64_t)(100 * dti + ci++));
            if (ci == 2)
                check_attention_case(c, dt, (uint64_t)(100 * dti + 50), UNREADABLE_KEY); // no dropout
            if (ci == 3) check_attention_case(c, dt, (uint64_t)(100 * dti + 51), DEVICE_KEY);
            if (ci == 6) check_attention_case(c, dt, (uint64_t)(100 * dti + 52), FIXED_KEY, 1); // one by one
            if (ci == 2 || ci == 4) // q|k|v rows of whole packs (encoder); 3 more (one by one, grouped heads)
                check_attention_case(c, dt, (uint64_t)(100 * dti + 53 + ci), FIXED_KEY, 0, ci == 2 ? 0 : 3);
        }
        check_isolation(dt);
        check_trailing_sequence(dt);
        dti++;
    }
    return check_summary("check_attention");
}

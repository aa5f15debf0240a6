// Host helpers for the kernel checks in tests/gpu/kernels/: each check_<op>.cu runs one op
// family on the GPU and through its CPU op (csrc/ops/) on the same random inputs and
// compares, in the spirit of llm.c's dev/cuda tests. A program prints one line per
// comparison and exits 1 when any comparison fails (tests/gpu/test_kernels.py runs them).
#pragma once

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#include "common.cuh"

extern "C" {
#include "core/convert.h"
#include "ops/random.h"
}

static inline int check_failures = 0, check_count = 0;

// stop the program on a CUDA error (a launcher's return value or a runtime call)
#define CHECK_CUDA(call) check_cuda_status((int)(call), #call, __FILE__, __LINE__)
static inline void check_cuda_status(int code, const char *what, const char *file, int line) {
    if (code == 0) return;
    printf("FAIL %s:%d %s: %s\n", file, line, what, cudaGetErrorString((cudaError_t)code));
    exit(1);
}

// n uniform values in [lo, hi) from stream seed
static inline std::vector<float> random_vector(int64_t n, float lo, float hi, uint64_t seed) {
    std::vector<float> x((size_t)n);
    random_uniform_fill(x.data(), n, lo, hi, lf_stream_key(seed, 7));
    return x;
}

// x rounded to dtype and back: the values the GPU sees when its inputs are of dtype
static inline std::vector<float> rounded(const std::vector<float> &x, lf_dtype dtype) {
    std::vector<float> out(x.size());
    std::vector<uint16_t> h(x.size());
    if (dtype == LF_F32) return x;
    lf_convert_from_f32(x.data(), dtype, h.data(), x.size());
    lf_convert_to_f32(h.data(), dtype, out.data(), x.size());
    return out;
}

// a device copy of x in dtype (freed by the program's end)
static inline void *to_device(const std::vector<float> &x, lf_dtype dtype) {
    size_t bytes = x.size() * lf_cuda_dtype_size(dtype);
    std::vector<uint16_t> h(dtype == LF_F32 ? 0 : x.size());
    const void *src = x.data();
    if (dtype != LF_F32) {
        lf_convert_from_f32(x.data(), dtype, h.data(), x.size());
        src = h.data();
    }
    void *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, bytes > 0 ? bytes : 1));
    CHECK_CUDA(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
    return d;
}

// a device buffer of n elements of dtype, every byte `byte`
static inline void *device_filled(int64_t n, lf_dtype dtype, int byte) {
    void *d = NULL;
    size_t bytes = (size_t)n * lf_cuda_dtype_size(dtype);
    CHECK_CUDA(cudaMalloc(&d, bytes > 0 ? bytes : 1));
    CHECK_CUDA(cudaMemset(d, byte, bytes));
    return d;
}

// a zeroed device buffer of n elements of dtype
static inline void *device_zeros(int64_t n, lf_dtype dtype) { return device_filled(n, dtype, 0); }

// n elements of dtype, every byte 0xff: NaN in f32, bf16 and f16 (what a launcher must not read)
static inline void *device_nans(int64_t n, lf_dtype dtype) { return device_filled(n, dtype, 0xff); }

// n elements of dtype at d, as f32 on the host (synchronizes)
static inline std::vector<float> from_device(const void *d, int64_t n, lf_dtype dtype) {
    std::vector<float> out((size_t)n);
    CHECK_CUDA(cudaDeviceSynchronize());
    if (dtype == LF_F32) {
        CHECK_CUDA(cudaMemcpy(out.data(), d, (size_t)n * 4, cudaMemcpyDeviceToHost));
        return out;
    }
    std::vector<uint16_t> h((size_t)n);
    CHECK_CUDA(cudaMemcpy(h.data(), d, (size_t)n * 2, cudaMemcpyDeviceToHost));
    lf_convert_to_f32(h.data(), dtype, out.data(), (size_t)n);
    return out;
}

// the tolerance of the issue for dtype: f32 1e-5 relative, bf16 / f16 2e-2
static inline double tolerance(lf_dtype dtype) { return dtype == LF_F32 ? 1e-5 : 2e-2; }

static inline const char *dtype_label(lf_dtype dtype) {
    return dtype == LF_F32 ? "f32" : dtype == LF_BF16 ? "bf16" : "f16";
}

// Compares got with want norm-wise: ||got - want|| <= tol * max(||want||, 1e-30), and every
// value finite. Prints "ok"/"FAIL", the relative error and the largest elementwise |diff|.
static inline int check_close(const char *what, lf_dtype dtype, const std::vector<float> &got,
                              const std::vector<float> &want, double tol) {
    double diff2 = 0.0, ref2 = 0.0, maxdiff = 0.0;
    int finite = got.size() == want.size();
    for (size_t i = 0; finite && i < got.size(); i++) {
        double d = (double)got[i] - (double)want[i];
        if (!isfinite(got[i]) && isfinite(want[i])) finite = 0;
        diff2 += d * d;
        ref2 += (double)want[i] * want[i];
        if (fabs(d) > maxdiff) maxdiff = fabs(d);
    }
    double rel = sqrt(diff2) / fmax(sqrt(ref2), 1e-30);
    int ok = finite && rel <= tol;
    printf("%s %s [%s] rel %.3g (tol %.1g) max|diff| %.3g n %zu\n", ok ? "ok" : "FAIL", what,
           dtype_label(dtype), rel, tol, maxdiff, want.size());
    check_count++;
    check_failures += !ok;
    return ok;
}

// Exact equality (integer-valued results, masks)
static inline int check_equal(const char *what, const std::vector<float> &got,
                              const std::vector<float> &want) {
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); i++)
        bad += i >= got.size() || got[i] != want[i];
    int ok = bad == 0 && got.size() == want.size();
    printf("%s %s: %zu of %zu differ\n", ok ? "ok" : "FAIL", what, bad, want.size());
    check_count++;
    check_failures += !ok;
    return ok;
}

// A condition that must hold (a rate, a flag): prints "ok"/"FAIL", what and the value seen
static inline int check_true(const char *what, int ok, double value) {
    printf("%s %s: %.6g\n", ok ? "ok" : "FAIL", what, value);
    check_count++;
    check_failures += !ok;
    return ok;
}

// a launcher's failure counts as a failed check; the program goes on with the next case
static inline int launched(const char *what, int rc) {
    if (rc == 0) return 1;
    printf("FAIL %s: launcher returned %d (%s)\n", what, rc, cudaGetErrorString((cudaError_t)rc));
    check_count++;
    check_failures++;
    return 0;
}

// device buffers of one case, freed with it
struct device_buffers {
    std::vector<void *> all;
    void *add(void *p) {
        all.push_back(p);
        return p;
    }
    ~device_buffers() {
        for (void *p : all)
            cudaFree(p);
    }
};

// the program's exit code: prints the summary line test_kernels.py looks for
static inline int check_summary(const char *program) {
    printf("%s: %d checks, %d failed\n", program, check_count, check_failures);
    return check_failures ? 1 : 0;
}

// the dtypes every kernel is checked in
static const lf_dtype check_dtypes[] = {LF_F32, LF_BF16, LF_F16};

// 1 when the program runs on the CPU emulator (tests/gpu/test_kernels_emulated.py builds it with
// LF_EMULATED), thousands of times slower than a GPU: checks then skip or shrink their largest cases,
// keeping every kernel, dtype and flag
static inline int emulated(void) {
#ifdef LF_EMULATED
    return 1;
#else
    return 0;
#endif
}

// A dropout key both ways: the CPU op's stream key and the lf_cuda_key that means it to a launcher;
// label names its kind in a check's line
struct check_key {
    uint64_t cpu;
    lf_cuda_key gpu;
    const char *label;
};

static inline check_key fixed_check_key(uint64_t key) { return {key, lf_cuda_fixed_key(key), ""}; }

enum check_key_kind {
    FIXED_KEY,     // computed on the host
    DEVICE_KEY,    // read by the kernels from a step seed in device memory, as the device model's
    UNREADABLE_KEY // a step seed no kernel can read: for p <= 0 only, where it must not be read
};

// the key of stream site for step seed seed: lf_stream_key(seed, site), of kind (the device copy of
// a DEVICE_KEY's seed is freed by the program's end)
static inline check_key check_key_of(check_key_kind kind, uint64_t seed, uint64_t site) {
    if (kind == FIXED_KEY) return fixed_check_key(lf_stream_key(seed, site));
    if (kind == UNREADABLE_KEY)
        return {lf_stream_key(seed, site), {(const uint64_t *)(uintptr_t)8, site}, " unreadable key"};
    uint64_t *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, sizeof seed));
    CHECK_CUDA(cudaMemcpy(d, &seed, sizeof seed, cudaMemcpyHostToDevice));
    return {lf_stream_key(seed, site), {d, site}, " device key"};
}

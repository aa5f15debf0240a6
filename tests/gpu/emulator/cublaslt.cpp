// cuBLASLt emulated: D = alpha * op(A) op(B) + beta * C (+ bias on every column), column-major, computed
// in double on the CPU and rounded once to D's type.
//
// What a call is checked for (an "EMU ERROR" otherwise): known attributes of the right sizes; layouts
// with ld >= rows, column-major, unbatched; shapes that agree (op(A): m x k, op(B): k x n, D: m x n);
// the type combinations of CUBLAS_COMPUTE_32F with f32 scale (A and B of one type; D of that type or
// f32; C's layout D's; CUBLAS_COMPUTE_32F_FAST_TF32 of f32 A and B, whose elements are then rounded to
// TF32, 10 mantissa bits, to nearest with ties away from zero as the tensor cores' cvt.rna), a bias of D's
// type; operands and workspace inside live device allocations, D overlapping neither A nor B nor the
// workspace; alpha and beta host pointers; an algorithm from the heuristic for this very problem, pointers at
// least as aligned as the preference promised, a workspace at least as large as the heuristic asked for
// (which it then fills with NaN bytes). The heuristic declines the bias epilogue
// (CUBLAS_STATUS_NOT_SUPPORTED) for a bias less than 16-byte aligned, so a caller's fallback for it runs too;
// it asks for a workspace of min(the preference's, 1 MiB).
//
// On a capturing stream the call is checked as made and recorded by value (alpha's and beta's values,
// the descriptors and layouts, which may be destroyed after the call), then checked again and run at
// each replay of the graph.
#include <stdio.h>
#include <string.h>

#include <vector>

#include "emu_internal.h" // after the standard headers (cuda_runtime.h's __noinline__)

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifdef EMU_WITH_OPENBLAS
extern "C" void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha,
                                  const double *a, int lda, const double *b, int ldb, double beta, double *c,
                                  int ldc);
#endif

struct emu_lt_context {
    int magic;
};
struct emu_lt_matmul_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N, pointer_mode = 0;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_type = -1;
};
struct emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_preference {
    uint64_t workspace = 0;
    uint32_t alignment[4] = {256, 256, 256, 256}; // A, B, C, D
};

namespace {

constexpr uint64_t ALGO_MAGIC = 0x656d756c74616c67ULL;
constexpr size_t WORKSPACE_ASKED = 1 << 20;

// names the call in reports while it runs
struct library_call {
    explicit library_call(const char *name) { emu_set_library_call(name); }
    ~library_call() { emu_set_library_call(nullptr); }
};

size_t type_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_64F ? 8 : 2; }

bool known_type(int t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

uint32_t alignment_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a != 0)
        a /= 2;
    return a;
}

template <typename T> bool read_attribute(T *dst, const void *value, size_t size, const char *name) {
    if (value == nullptr || size != sizeof(T)) {
        emu_error("%s takes %zu bytes, not %zu", name, sizeof(T), size);
        return false;
    }
    memcpy(dst, value, sizeof(T));
    return true;
}

// m, n, k of the product; false (reported) when the layouts and the operation disagree
bool problem_of(const emu_lt_matmul_desc *op, const emu_lt_layout *a, const emu_lt_layout *b,
                const emu_lt_layout *c, const emu_lt_layout *d, uint64_t *m, uint64_t *n, uint64_t *k) {
    if (op == nullptr || a == nullptr || b == nullptr || c == nullptr || d == nullptr) {
        emu_error("a NULL descriptor");
        return false;
    }
    const uint64_t am = op->transa ? a->cols : a->rows, ak = op->transa ? a->rows : a->cols;
    const uint64_t bk = op->transb ? b->cols : b->rows, bn = op->transb ? b->rows : b->cols;
    *m = d->rows, *n = d->cols, *k = ak;
    if (am != *m || bn != *n || bk != ak) {
        emu_error("shapes disagree: op(A) %llu x %llu, op(B) %llu x %llu, D %llu x %llu",
                  (unsigned long long)am, (unsigned long long)ak, (unsigned long long)bk,
                  (unsigned long long)bn, (unsigned long long)*m, (unsigned long long)*n);
        return false;
    }
    if (c->type != d->type || c->rows != d->rows || c->cols != d->cols || c->ld != d->ld) {
        emu_error("C's layout differs from D's");
        return false;
    }
    const bool tf32 = op->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    if ((op->compute != CUBLAS_COMPUTE_32F && !tf32) || op->scale != CUDA_R_32F ||
        (tf32 && a->type != CUDA_R_32F)) {
        emu_error("compute type %d with scale type %d and A of type %d (CUBLAS_COMPUTE_32F, and "
                  "CUBLAS_COMPUTE_32F_FAST_TF32 of f32 operands, with CUDA_R_32F are emulated)",
                  (int)op->compute, (int)op->scale, (int)a->type);
        return false;
    }
    if (a->type != b->type || (d->type != a->type && d->type != CUDA_R_32F)) {
        emu_error("types A %d, B %d, D %d: A and B must agree, D be theirs or f32", (int)a->type,
                  (int)b->type, (int)d->type);
        return false;
    }
    if (op->epilogue != CUBLASLT_EPILOGUE_DEFAULT && op->epilogue != CUBLASLT_EPILOGUE_BIAS) {
        emu_error("epilogue %u is not emulated", op->epilogue);
        return false;
    }
    if (op->epilogue == CUBLASLT_EPILOGUE_BIAS && op->bias_type != -1 && op->bias_type != (int32_t)d->type) {
        emu_error("bias type %d differs from D's type %d", op->bias_type, (int)d->type);
        return false;
    }
    return true;
}

// the operand's elements [0, (cols - 1) * ld + rows) are device memory
bool operand_in_device(const char *name, const void *p, const emu_lt_layout *l) {
    if (l->rows == 0 || l->cols == 0) return true;
    const size_t elements = (size_t)((l->cols - 1) * (uint64_t)l->ld + l->rows);
    char what[64];
    snprintf(what, sizeof what, "operand %s", name);
    return emu_device_range(what, p, elements * type_bytes(l->type));
}

bool overlap(const void *p, size_t pn, const void *q, size_t qn) {
    return (const char *)p < (const char *)q + qn && (const char *)q < (const char *)p + pn;
}

size_t extent_bytes(const emu_lt_layout *l) {
    if (l->rows == 0 || l->cols == 0) return 0;
    return (size_t)((l->cols - 1) * (uint64_t)l->ld + l->rows) * type_bytes(l->type);
}

// v (an f32) rounded to TF32: 10 mantissa bits, to nearest, ties away from zero; inf and NaN as they are
double tf32_round(double v) {
    const float f = (float)v;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;
    float r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

double load(const void *p, cudaDataType_t t, uint64_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == CUDA_R_16BF ? (double)emu_bf16_bits_to_f32(h) : (double)emu_f16_bits_to_f32(h);
}

void store(void *p, cudaDataType_t t, uint64_t i, double v) {
    const float f = (float)v;
    if (t == CUDA_R_32F)
        ((float *)p)[i] = f;
    else
        ((uint16_t *)p)[i] = t == CUDA_R_16BF ? emu_f32_to_bf16_bits(f) : emu_f32_to_f16_bits(f);
}

// a fingerprint of the problem, carried by the algorithm from the heuristic to the matmul
uint64_t problem_key(const emu_lt_matmul_desc *op, const emu_lt_layout *a, const emu_lt_layout *b,
                     const emu_lt_layout *d) {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](uint64_t x) { h = (h ^ x) * 1099511628211ULL; };
    mix((uint64_t)op->transa), mix((uint64_t)op->transb), mix(op->epilogue);
    for (const emu_lt_layout *l : {a, b, d})
        mix((uint64_t)l->type), mix(l->rows), mix(l->cols), mix((uint64_t)l->ld);
    return h;
}

} // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new emu_lt_context{1};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasLtGetStatusName(cublasStatus_t status) {
    static char name[48];
    snprintf(name, sizeof name, "CUBLAS_STATUS_%d", (int)status);
    return name;
}
const char *cublasLtGetStatusString(cublasStatus_t status) { return cublasLtGetStatusName(status); }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (desc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *desc = new emu_lt_matmul_desc;
    (*desc)->compute = compute;
    (*desc)->scale = scale;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *value, size_t size) {
    library_call call("cublasLtMatmulDescSetAttribute");
    bool ok = false;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        ok = read_attribute(&desc->transa, value, size, "TRANSA");
        break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
        ok = read_attribute(&desc->transb, value, size, "TRANSB");
        break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
        ok = read_attribute(&desc->pointer_mode, value, size, "POINTER_MODE");
        if (ok && desc->pointer_mode != 0) emu_error("only the host pointer mode is emulated");
        break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        ok = read_attribute(&desc->epilogue, value, size, "EPILOGUE");
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        ok = read_attribute(&desc->bias, value, size, "BIAS_POINTER");
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        ok = read_attribute(&desc->bias_type, value, size, "BIAS_DATA_TYPE");
        break;
    default:
        emu_error("matmul descriptor attribute %d is not emulated", (int)attr);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (ok && (desc->transa > CUBLAS_OP_T || desc->transb > CUBLAS_OP_T)) {
        emu_error("transpose operation %d/%d is not emulated", desc->transa, desc->transb);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    library_call call("cublasLtMatrixLayoutCreate");
    if (layout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    if (!known_type(type)) {
        emu_error("layout of type %d (f32, f16, bf16 are emulated)", (int)type);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (ld < (int64_t)rows || ld < 1) {
        emu_error("layout %llu x %llu with leading dimension %lld", (unsigned long long)rows,
                  (unsigned long long)cols, (long long)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *layout = new emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr, const void *value,
                                                size_t size) {
    library_call call("cublasLtMatrixLayoutSetAttribute");
    int32_t v = 0;
    if ((attr == CUBLASLT_MATRIX_LAYOUT_ORDER || attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) &&
        read_attribute(&v, value, size, "layout attribute")) {
        if ((attr == CUBLASLT_MATRIX_LAYOUT_ORDER && v == CUBLASLT_ORDER_COL) ||
            (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && v == 1))
            return CUBLAS_STATUS_SUCCESS;
    }
    (void)layout;
    emu_error("layout attribute %d (value %d) is not emulated", (int)attr, v);
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    if (pref == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = new emu_lt_preference;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *value, size_t size) {
    library_call call("cublasLtMatmulPreferenceSetAttribute");
    bool ok = false;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        ok = read_attribute(&pref->workspace, value, size, "MAX_WORKSPACE_BYTES");
        break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        ok = read_attribute(&pref->alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], value, size,
                            "MIN_ALIGNMENT");
        break;
    default:
        emu_error("preference attribute %d is not emulated", (int)attr);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

// the heuristic's calls so far (C, for ctypes: a step of a known shape should make none)
static long long heuristic_query_count;
extern "C" __attribute__((visibility("default"))) long long emu_heuristic_query_count(void) {
    return heuristic_query_count;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned) {
    library_call call("cublasLtMatmulAlgoGetHeuristic");
    heuristic_query_count++;
    uint64_t m, n, k;
    if (handle == nullptr || pref == nullptr || results == nullptr || returned == nullptr || requested < 1) {
        emu_error("a NULL handle, preference or result, or %d algorithms requested", requested);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *returned = 0;
    if (!problem_of(desc, a, b, c, d, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS && alignment_of(desc->bias) < 16)
        return CUBLAS_STATUS_NOT_SUPPORTED; // no algorithm of the emulation takes a bias so aligned
    memset(&results[0], 0, sizeof results[0]);
    cublasLtMatmulAlgo_t &algo = results[0].algo;
    algo.data[0] = ALGO_MAGIC;
    algo.data[1] = problem_key(desc, a, b, d);
    for (int i = 0; i < 4; i++)
        algo.data[2 + i] = pref->alignment[i];
    algo.data[6] = pref->workspace < WORKSPACE_ASKED ? pref->workspace : WORKSPACE_ASKED;
    results[0].workspaceSize = (size_t)algo.data[6];
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

namespace {

// a matmul call by value: what a capturing stream records
struct matmul_call {
    emu_lt_matmul_desc desc;
    emu_lt_layout a, b, c, d;
    cublasLtMatmulAlgo_t algo;
    const void *A, *B, *C;
    void *D, *workspace;
    size_t workspace_bytes;
    float alpha, beta;
};

// the checks of a call (reported) on its shapes, algorithm, alignment, workspace and operands
cublasStatus_t check_matmul(const matmul_call &m) {
    uint64_t rows, cols, inner;
    const emu_lt_matmul_desc *desc = &m.desc;
    if (!problem_of(desc, &m.a, &m.b, &m.c, &m.d, &rows, &cols, &inner)) return CUBLAS_STATUS_INVALID_VALUE;
    const cublasLtMatmulAlgo_t *algo = &m.algo;
    if (algo->data[0] != ALGO_MAGIC || algo->data[1] != problem_key(desc, &m.a, &m.b, &m.d)) {
        emu_error("the algorithm is not one the heuristic returned for this problem");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const void *ptrs[4] = {m.A, m.B, m.C, m.D};
    const char *names[4] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; i++)
        if (alignment_of(ptrs[i]) < algo->data[2 + i]) {
            emu_error("operand %s at %p is %u-byte aligned, but the preference promised %llu", names[i],
                      ptrs[i], alignment_of(ptrs[i]), (unsigned long long)algo->data[2 + i]);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    const size_t asked = (size_t)algo->data[6];
    if (m.workspace_bytes < asked || (asked > 0 && !emu_device_range("workspace", m.workspace, asked))) {
        emu_error("a workspace of %zu bytes at %p; the heuristic asked for %zu", m.workspace_bytes,
                  m.workspace, asked);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!operand_in_device("A", m.A, &m.a) || !operand_in_device("B", m.B, &m.b) ||
        !operand_in_device("D", m.D, &m.d) || (m.beta != 0.0f && !operand_in_device("C", m.C, &m.c)))
        return CUBLAS_STATUS_INVALID_VALUE;
    const bool bias = desc->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if (bias && !emu_device_range("bias", desc->bias, rows * type_bytes(m.d.type)))
        return CUBLAS_STATUS_INVALID_VALUE;
    const size_t dn = extent_bytes(&m.d);
    if (overlap(m.D, dn, m.A, extent_bytes(&m.a)) || overlap(m.D, dn, m.B, extent_bytes(&m.b)) ||
        overlap(m.D, dn, m.workspace, asked) || (m.C != m.D && overlap(m.D, dn, m.C, extent_bytes(&m.c)))) {
        emu_error("D overlaps A, B, C or the workspace");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// D = alpha op(A) op(B) + beta C (+ bias) of a checked call; the workspace filled with NaN bytes
void compute_matmul(const matmul_call &m) {
    const emu_lt_matmul_desc *desc = &m.desc;
    const emu_lt_layout *a = &m.a, *b = &m.b, *c = &m.c, *d = &m.d;
    const uint64_t rows = d->rows, cols = d->cols, k = desc->transa ? a->rows : a->cols;
    if (m.algo.data[6] > 0) memset(m.workspace, 0xff, (size_t)m.algo.data[6]);
    if (rows == 0 || cols == 0) return;

    // op(A) as rows x k and op(B) as k x cols, row-major, in double; their product p: rows x cols
    std::vector<double> x(rows * k), y(k * cols), p(rows * cols, 0.0);
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t kk = 0; kk < k; kk++)
            x[i * k + kk] =
                load(m.A, a->type, desc->transa ? kk + i * (uint64_t)a->ld : i + kk * (uint64_t)a->ld);
    for (uint64_t kk = 0; kk < k; kk++)
        for (uint64_t j = 0; j < cols; j++)
            y[kk * cols + j] =
                load(m.B, b->type, desc->transb ? j + kk * (uint64_t)b->ld : kk + j * (uint64_t)b->ld);
    if (desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32) {
        for (double &v : x)
            v = tf32_round(v);
        for (double &v : y)
            v = tf32_round(v);
    }
#ifdef EMU_WITH_OPENBLAS
    if (k > 0) // CblasRowMajor, CblasNoTrans
        scipy_cblas_dgemm(101, 111, 111, (int)rows, (int)cols, (int)k, 1.0, x.data(), (int)k, y.data(),
                          (int)cols, 0.0, p.data(), (int)cols);
#else
#pragma omp parallel for
    for (int64_t i = 0; i < (int64_t)rows; i++)
        for (uint64_t kk = 0; kk < k; kk++) {
            const double xi = x[i * k + kk];
            for (uint64_t j = 0; j < cols; j++)
                p[i * cols + j] += xi * y[kk * cols + j];
        }
#endif
    const bool bias = desc->epilogue == CUBLASLT_EPILOGUE_BIAS;
    for (uint64_t j = 0; j < cols; j++)
        for (uint64_t i = 0; i < rows; i++) {
            const uint64_t at = i + j * (uint64_t)d->ld;
            double v = (double)m.alpha * p[i * cols + j];
            if (m.beta != 0.0f) v += (double)m.beta * load(m.C, c->type, at);
            if (bias) v += load(desc->bias, d->type, i);
            store(m.D, d->type, at, v);
        }
    emu_check_allocation_bounds("cublasLtMatmul");
}

// a call checked (again, at a replay: its operands may be gone) and run
cudaError_t run_matmul(const matmul_call &m) {
    library_call call("cublasLtMatmul");
    if (check_matmul(m) != CUBLAS_STATUS_SUCCESS) return cudaErrorLaunchFailure;
    compute_matmul(m);
    return cudaSuccess;
}

} // namespace

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
    library_call call("cublasLtMatmul");
    if (handle == nullptr || alpha == nullptr || beta == nullptr) {
        emu_error("a NULL handle, alpha or beta");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    uint64_t m, n, k;
    if (!problem_of(desc, a, b, c, d, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!emu_valid_stream(stream)) {
        emu_error("stream %p is not a live stream", (void *)stream);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!emu_stream_on_current_device(stream, "cublasLtMatmul")) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (emu_is_device_pointer(alpha) || emu_is_device_pointer(beta)) {
        emu_error("alpha and beta must be host pointers in the host pointer mode");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (algo == nullptr) {
        emu_error("a NULL algorithm");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const matmul_call call_by_value = {*desc,
                                       *a,
                                       *b,
                                       *c,
                                       *d,
                                       *algo,
                                       A,
                                       B,
                                       C,
                                       D,
                                       workspace,
                                       workspace_bytes,
                                       *(const float *)alpha,
                                       *(const float *)beta};
    const cublasStatus_t status = check_matmul(call_by_value);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    const cudaError_t e = emu_enqueue("cublasLtMatmul", stream,
                                      [call_by_value](cudaStream_t) { return run_matmul(call_by_value); });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

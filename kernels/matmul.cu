// Linear layers over packed tokens with cuBLASLt: the CUDA twin of csrc/ops/matmul.c.
//
// cuBLASLt is column-major; a row-major (R, K) matrix is the column-major (K, R) matrix with
// leading dimension K. So row-major out = x W^T is column-major out^T = W^T x^T, with W and x as
// stored (see each product below for its operands).
#include <string.h>

#include <atomic>
#include <mutex>

#include "cublas_handle.cuh"
#include "matmul.cuh"

size_t matmul_workspace_bytes(void) { return (size_t)32 << 20; } // cuBLAS's recommendation for Hopper

static std::atomic<int> tf32; // f32 products on TF32 tensor cores (matmul_set_tf32)

void matmul_set_tf32(int on) { tf32 = on != 0; }
int matmul_tf32(void) { return tf32; }

static int valid_dtype(lf_dtype dtype) { return dtype == LF_F32 || dtype == LF_BF16 || dtype == LF_F16; }

static cudaDataType_t lt_type(lf_dtype dtype) {
    return dtype == LF_F32 ? CUDA_R_32F : dtype == LF_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// the largest power of two, at most 256, that divides the address: what cuBLASLt may assume of it
static uint32_t pointer_alignment(const void *p) {
    uint32_t align = 256;
    while (align > 1 && (uintptr_t)p % align != 0)
        align /= 2;
    return align;
}

// one operand as stored: column-major (rows, cols), packed (leading dimension rows)
struct lt_matrix {
    const void *data;
    cudaDataType_t type;
    int64_t rows, cols;
};

// d: (m, n) = alpha * op(a) @ op(b) + beta * d (+ bias: (m,) of d's type on every column)
struct lt_product {
    cublasOperation_t transa, transb;
    lt_matrix a, b, d;
    float alpha, beta;
};

// Everything cuBLASLt's heuristic sees of a product: its plan (descriptors, layouts, algorithm) is
// made once per key and reused, so a step of a known shape queries nothing (the heuristic costs
// ~10 us of host time a call, ~290 calls a roberta-large step). The bias pointer is not in the key:
// it is set on the cached operation descriptor at each call.
struct lt_key {
    int32_t transa, transb;
    int32_t a_type, b_type, d_type, compute;
    int64_t a_rows, a_cols, b_rows, b_cols, d_rows, d_cols;
    uint32_t align_a, align_b, align_d;
    uint32_t bias_align; // 0: no bias epilogue
    uint64_t workspace_bytes;
};

// the descriptors of one key and the algorithm the heuristic chose for it (status: the heuristic's
// answer, kept when it declines the problem too: the caller's fallback is then taken at once)
struct lt_plan {
    lt_key key;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo;
    cublasStatus_t status;
    uint64_t last_use;
    void release() {
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
        op = nullptr, a = b = d = nullptr;
    }
};

// the plans of a process; a full cache drops its least recently used plan (a run sees a few dozen
// products per batch shape and a few dozen shapes)
static const int LT_PLAN_CACHE_SIZE = 1024;
static lt_plan lt_plans[LT_PLAN_CACHE_SIZE];
static int lt_plan_count;
static uint64_t lt_plan_uses;
static std::mutex lt_plans_lock; // a plan's descriptor takes the call's bias pointer until the call is made

static cublasStatus_t set_op(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const void *value,
                             size_t size) {
    return cublasLtMatmulDescSetAttribute(op, attr, value, size);
}

static cublasStatus_t set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                               const void *value, size_t size) {
    return cublasLtMatmulPreferenceSetAttribute(pref, attr, value, size);
}

static cublasStatus_t make_layout(cublasLtMatrixLayout_t *layout, cudaDataType_t type, int64_t rows,
                                  int64_t cols) {
    return cublasLtMatrixLayoutCreate(layout, type, (uint64_t)rows, (uint64_t)cols, rows);
}

static lt_key key_of(const lt_product &p, const void *bias, uint64_t workspace_bytes) {
    lt_key k;
    memset(&k, 0, sizeof k); // the padding too: keys are compared with memcmp
    k.transa = p.transa, k.transb = p.transb;
    k.a_type = p.a.type, k.b_type = p.b.type, k.d_type = p.d.type;
    k.compute = p.a.type == CUDA_R_32F && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    k.a_rows = p.a.rows, k.a_cols = p.a.cols, k.b_rows = p.b.rows, k.b_cols = p.b.cols;
    k.d_rows = p.d.rows, k.d_cols = p.d.cols;
    k.align_a = pointer_alignment(p.a.data), k.align_b = pointer_alignment(p.b.data);
    k.align_d = pointer_alignment(p.d.data);
    k.bias_align = bias != nullptr ? pointer_alignment(bias) : 0;
    k.workspace_bytes = workspace_bytes;
    return k;
}

// the operation descriptor of k: its compute type with 32-bit float scale, bias epilogue (of d's type)
static cublasStatus_t describe_op(lt_plan &plan) {
    const lt_key &k = plan.key;
    cublasStatus_t st = cublasLtMatmulDescCreate(&plan.op, (cublasComputeType_t)k.compute, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &k.transa, sizeof k.transa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &k.transb, sizeof k.transb);
    if (st != CUBLAS_STATUS_SUCCESS || k.bias_align == 0) return st;
    uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    st = set_op(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &k.d_type, sizeof k.d_type);
    return st;
}

// the heuristic's constraints (the workspace on offer and the operands' actual alignment), then its
// best algorithm for the plan's problem
static cublasStatus_t choose_algorithm(lt_plan &plan, const void *bias) {
    const lt_key &k = plan.key;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasStatus_t st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &k.workspace_bytes,
                      sizeof k.workspace_bytes);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.align_a, sizeof k.align_a);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.align_b, sizeof k.align_b);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.align_d, sizeof k.align_d);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.align_d, sizeof k.align_d);
    if (st == CUBLAS_STATUS_SUCCESS && k.bias_align != 0) // the heuristic may judge the bias's alignment
        st = set_op(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    cublasLtMatmulHeuristicResult_t result = {};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(lf_cublaslt_handle(), plan.op, plan.a, plan.b, plan.d, plan.d,
                                            pref, 1, &result, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && (found < 1 || result.state != CUBLAS_STATUS_SUCCESS))
        st = CUBLAS_STATUS_NOT_SUPPORTED;
    plan.algo = result.algo;
    return st;
}

// a new plan for k: descriptors and the heuristic's algorithm (a full cache first drops its least
// recently used plan)
static lt_plan *make_plan(const lt_key &k, const void *bias) {
    lt_plan *plan = &lt_plans[0];
    if (lt_plan_count < LT_PLAN_CACHE_SIZE) {
        plan = &lt_plans[lt_plan_count++];
    } else {
        for (int i = 1; i < lt_plan_count; i++)
            if (lt_plans[i].last_use < plan->last_use) plan = &lt_plans[i];
        plan->release();
    }
    plan->key = k;
    cublasStatus_t st = describe_op(*plan);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&plan->a, (cudaDataType_t)k.a_type, k.a_rows, k.a_cols);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&plan->b, (cudaDataType_t)k.b_type, k.b_rows, k.b_cols);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&plan->d, (cudaDataType_t)k.d_type, k.d_rows, k.d_cols);
    if (st == CUBLAS_STATUS_SUCCESS) st = choose_algorithm(*plan, bias);
    plan->status = st;
    if (st != CUBLAS_STATUS_SUCCESS &&
        st != CUBLAS_STATUS_NOT_SUPPORTED) { // a failure: asked again next time
        plan->release();
        memset(&plan->key, 0, sizeof plan->key); // no product's key (its sizes are >= 1)
    }
    return plan;
}

static lt_plan *find_plan(const lt_key &k) {
    for (int i = 0; i < lt_plan_count; i++)
        if (memcmp(&lt_plans[i].key, &k, sizeof k) == 0) return &lt_plans[i];
    return nullptr;
}

// runs p with the best algorithm cuBLASLt's heuristic offers for it (C is D: beta accumulates into d)
static cublasStatus_t lt_run(const lt_product &p, const void *bias, void *workspace, cudaStream_t stream) {
    cublasLtHandle_t handle = lf_cublaslt_handle();
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    const uint64_t workspace_bytes = workspace != nullptr ? matmul_workspace_bytes() : 0;
    const lt_key k = key_of(p, bias, workspace_bytes);
    std::lock_guard<std::mutex> hold(lt_plans_lock);
    lt_plan *plan = find_plan(k);
    if (plan == nullptr) plan = make_plan(k, bias);
    plan->last_use = ++lt_plan_uses;
    cublasStatus_t st = plan->status;
    if (st == CUBLAS_STATUS_SUCCESS && bias != nullptr)
        st = set_op(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    void *d = const_cast<void *>(p.d.data);
    return cublasLtMatmul(handle, plan->op, &p.alpha, p.a.data, plan->a, p.b.data, plan->b, &p.beta, d,
                          plan->d, d, plan->d, &plan->algo, workspace, workspace_bytes, stream);
}

// out: (rows, OC) += bias: (OC,) on every row
template <typename E> __global__ void bias_add_kernel(E *out, const E *bias, int64_t n, int OC) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_f32<E>(to_f32(out[i]) + to_f32(bias[i % OC]));
}

int matmul_bias_add_cuda(void *out, const void *bias, int T, int OC, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || OC < 0) return (int)cudaErrorInvalidValue;
    const int64_t n = (int64_t)T * OC;
    if (n == 0) return 0;
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        bias_add_kernel<E><<<lf_blocks(n, 256), 256, 0, stream>>>((E *)out, (const E *)bias, n, OC);
        return lf_launch_status();
    });
}

int matmul_forward_cuda(void *out, const void *x, const void *w, const void *bias, int T, int C, int OC,
                        int accumulate, void *workspace, lf_dtype dtype, cudaStream_t stream) {
    if (T < 0 || C < 1 || OC < 0 || !valid_dtype(dtype)) return (int)cudaErrorInvalidValue;
    if (T == 0 || OC == 0) return 0;
    const cudaDataType_t type = lt_type(dtype);
    // out^T: (OC, T) = (w as stored: (C, OC))^T @ (x as stored: (C, T))
    const float beta = accumulate ? 1.0f : 0.0f;
    const lt_matrix wm = {w, type, C, OC}, xm = {x, type, C, T}, om = {out, type, OC, T};
    const lt_product p = {CUBLAS_OP_T, CUBLAS_OP_N, wm, xm, om, 1.0f, beta};
    cublasStatus_t st = lt_run(p, bias, workspace, stream);
    if (st == CUBLAS_STATUS_SUCCESS || bias == nullptr) return lf_cublas_error(st);
    // no algorithm takes this bias in its epilogue: the product, then the bias on its own
    st = lt_run(p, nullptr, workspace, stream);
    if (st != CUBLAS_STATUS_SUCCESS) return lf_cublas_error(st);
    return matmul_bias_add_cuda(out, bias, T, OC, dtype, stream);
}

// db: (OC,) += sum over rows of dout: (rows, OC). Block (32, BIAS_GRAD_LANES): 32 columns, each
// summed by BIAS_GRAD_LANES threads over interleaved rows, then added up in a fixed order.
enum { BIAS_GRAD_LANES = 8 };

template <typename E> __global__ void bias_grad_kernel(float *db, const E *dout, int rows, int OC) {
    __shared__ float partial[BIAS_GRAD_LANES][33];
    const int col = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (col < OC)
        for (int t = threadIdx.y; t < rows; t += BIAS_GRAD_LANES)
            s += to_f32(dout[(int64_t)t * OC + col]);
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || col >= OC) return;
    for (int y = 1; y < BIAS_GRAD_LANES; y++)
        s += partial[y][threadIdx.x];
    db[col] += s;
}

int matmul_backward_cuda(void *dx, float *dw, float *db, const void *dout, const void *x, const void *w,
                         int T, int C, int OC, int accumulate_dx, void *workspace, lf_dtype dtype,
                         cudaStream_t stream) {
    if (T < 0 || C < 1 || OC < 0 || !valid_dtype(dtype)) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    if (OC == 0) { // no product: dx = 0 when it is written, all else unchanged
        if (dx == nullptr || accumulate_dx) return 0;
        return (int)cudaMemsetAsync(dx, 0, (size_t)T * C * lf_cuda_dtype_size(dtype), stream);
    }
    const cudaDataType_t type = lt_type(dtype);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (dx != nullptr) {
        // dx^T: (C, T) (+)= (w as stored: (C, OC)) @ (dout as stored: (OC, T))
        const lt_matrix wm = {w, type, C, OC}, dom = {dout, type, OC, T}, dxm = {dx, type, C, T};
        const lt_product p = {CUBLAS_OP_N, CUBLAS_OP_N, wm, dom, dxm, 1.0f, accumulate_dx ? 1.0f : 0.0f};
        st = lt_run(p, nullptr, workspace, stream);
        if (st != CUBLAS_STATUS_SUCCESS) return lf_cublas_error(st);
    }
    if (dw != nullptr) {
        // dw^T: (C, OC) += (x as stored: (C, T)) @ (dout as stored: (OC, T))^T, in f32
        const lt_matrix xm = {x, type, C, T}, dom = {dout, type, OC, T}, dwm = {dw, CUDA_R_32F, C, OC};
        const lt_product p = {CUBLAS_OP_N, CUBLAS_OP_T, xm, dom, dwm, 1.0f, 1.0f};
        st = lt_run(p, nullptr, workspace, stream);
        if (st != CUBLAS_STATUS_SUCCESS) return lf_cublas_error(st);
    }
    if (db == nullptr) return 0;
    return lf_dispatch_dtype(dtype, [&](auto e) {
        using E = decltype(e);
        const dim3 block(32, BIAS_GRAD_LANES);
        bias_grad_kernel<E><<<lf_blocks(OC, 32), block, 0, stream>>>(db, (const E *)dout, T, OC);
        return lf_launch_status();
    });
}

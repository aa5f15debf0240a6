// Linear layers over packed tokens with cuBLASLt: the CUDA twin of csrc/ops/matmul.c.
//
// cuBLASLt is column-major; a row-major (R, K) matrix is the column-major (K, R) matrix with
// leading dimension K. So row-major out = x W^T is column-major out^T = W^T x^T, with W and x as
// stored (see each product below for its operands).
#include "cublas_handle.cuh"
#include "matmul.cuh"

size_t matmul_workspace_bytes(void) { return (size_t)32 << 20; } // cuBLAS's recommendation for Hopper

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

// the descriptors of one product, destroyed with it
struct lt_descriptors {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~lt_descriptors() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

static cublasStatus_t set_op(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const void *value,
                             size_t size) {
    return cublasLtMatmulDescSetAttribute(op, attr, value, size);
}

static cublasStatus_t set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                               const void *value, size_t size) {
    return cublasLtMatmulPreferenceSetAttribute(pref, attr, value, size);
}

static cublasStatus_t make_layout(cublasLtMatrixLayout_t *layout, const lt_matrix &m) {
    return cublasLtMatrixLayoutCreate(layout, m.type, (uint64_t)m.rows, (uint64_t)m.cols, m.rows);
}

// the operation descriptor of p: 32-bit float compute and scale, bias epilogue when bias is given
static cublasStatus_t describe_op(lt_descriptors &desc, const lt_product &p, const void *bias) {
    cublasStatus_t st = cublasLtMatmulDescCreate(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t transa = p.transa, transb = p.transb;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb);
    if (st != CUBLAS_STATUS_SUCCESS || bias == nullptr) return st;
    uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    int32_t bias_type = p.d.type;
    st = set_op(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_op(desc.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type);
    return st;
}

// the heuristic's constraints: the workspace on offer and the operands' actual alignment
static cublasStatus_t describe_preference(lt_descriptors &desc, const lt_product &p,
                                          uint64_t workspace_bytes) {
    cublasStatus_t st = cublasLtMatmulPreferenceCreate(&desc.pref);
    uint32_t align_a = pointer_alignment(p.a.data), align_b = pointer_alignment(p.b.data);
    uint32_t align_d = pointer_alignment(p.d.data);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(desc.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                      sizeof workspace_bytes);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof align_d);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_pref(desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof align_d);
    return st;
}

// runs p with the best algorithm cuBLASLt's heuristic offers for it (C is D: beta accumulates into d)
static cublasStatus_t lt_run(const lt_product &p, const void *bias, void *workspace, cudaStream_t stream) {
    cublasLtHandle_t handle = lf_cublaslt_handle();
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    uint64_t workspace_bytes = workspace != nullptr ? matmul_workspace_bytes() : 0;
    lt_descriptors desc;
    cublasStatus_t st = describe_op(desc, p, bias);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&desc.a, p.a);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&desc.b, p.b);
    if (st == CUBLAS_STATUS_SUCCESS) st = make_layout(&desc.d, p.d);
    if (st == CUBLAS_STATUS_SUCCESS) st = describe_preference(desc, p, workspace_bytes);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    cublasLtMatmulHeuristicResult_t result = {};
    int found = 0;
    st = cublasLtMatmulAlgoGetHeuristic(handle, desc.op, desc.a, desc.b, desc.d, desc.d, desc.pref, 1,
                                        &result, &found);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_NOT_SUPPORTED;
    void *d = const_cast<void *>(p.d.data);
    return cublasLtMatmul(handle, desc.op, &p.alpha, p.a.data, desc.a, p.b.data, desc.b, &p.beta, d, desc.d,
                          d, desc.d, &result.algo, workspace, workspace_bytes, stream);
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

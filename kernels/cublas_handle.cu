// One cuBLASLt handle per process, created on first use; matrix-product kernels share it.
#include <cublasLt.h>

static cublasLtHandle_t lt_handle;

extern "C" cublasLtHandle_t lf_cublaslt_handle(void) {
    if (lt_handle == nullptr && cublasLtCreate(&lt_handle) != CUBLAS_STATUS_SUCCESS) return nullptr;
    return lt_handle;
}

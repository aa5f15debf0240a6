// One cuBLASLt handle per process, created on first use; matrix-product kernels share it.
#include "cublas_handle.cuh"

static cublasLtHandle_t lt_handle;

extern "C" cublasLtHandle_t lf_cublaslt_handle(void) {
    if (lt_handle == nullptr && cublasLtCreate(&lt_handle) != CUBLAS_STATUS_SUCCESS) return nullptr;
    return lt_handle;
}

int lf_cublas_error(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS:
        return 0;
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return (int)cudaErrorInitializationError;
    case CUBLAS_STATUS_ALLOC_FAILED:
        return (int)cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_INVALID_VALUE:
        return (int)cudaErrorInvalidValue;
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return (int)cudaErrorNoKernelImageForDevice;
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return (int)cudaErrorNotSupported;
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return (int)cudaErrorLaunchFailure;
    default:
        return (int)cudaErrorUnknown;
    }
}

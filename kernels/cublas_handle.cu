// One cuBLASLt handle per device of the process, created on first use on the calling thread's
// current device (the runtime selects the model's at every entry); matrix-product kernels share it.
#include "cublas_handle.cuh"

#include <mutex>

enum { MAX_DEVICES = 64 };
static cublasLtHandle_t lt_handles[MAX_DEVICES];
static std::mutex lt_mutex; // two threads entering two models may create handles at once

extern "C" cublasLtHandle_t lf_cublaslt_handle(void) {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= MAX_DEVICES) return nullptr;
    std::lock_guard<std::mutex> hold(lt_mutex);
    cublasLtHandle_t *h = &lt_handles[device];
    if (*h == nullptr && cublasLtCreate(h) != CUBLAS_STATUS_SUCCESS) *h = nullptr;
    return *h;
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

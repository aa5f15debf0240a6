// The process's cuBLASLt handle and the mapping of cuBLAS status codes to launcher return codes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

// the handle, created on first use; NULL when cuBLASLt cannot be initialized
extern "C" cublasLtHandle_t lf_cublaslt_handle(void);

// a launcher's return code for a cuBLAS status: 0 on success, else the closest cudaError_t
int lf_cublas_error(cublasStatus_t status);

// The CUDA backend lives in lorafast/_cuda_kernels.so (built from kernels/), opened with
// dlopen at run time, so that _C imports on machines without a GPU, driver or cuBLAS.
// Each kernel family adds its launchers to lf_cuda_api; kernels/api.cu fills the table.
#pragma once

#include <stddef.h>

#define LF_CUDA_API_VERSION 1

typedef struct lf_cuda_api {
    int version; // LF_CUDA_API_VERSION of the library that filled the table
    // device management: each returns 0 on success, else a CUDA error code
    int (*device_count)(int *count);
    int (*device_name)(int device, char *name, size_t size);
    const char *(*error_string)(int code);
    int (*malloc)(void **ptr, size_t bytes);
    int (*free)(void *ptr);
    int (*memcpy_h2d)(void *dst, const void *src, size_t bytes);
    int (*memcpy_d2h)(void *dst, const void *src, size_t bytes);
    int (*synchronize)(void);
} lf_cuda_api;

// Opens the kernels library at path (once). Returns LF_OK, or an error whose message says
// why CUDA is unavailable (library missing, cuBLAS missing, no driver, no device).
int lf_cuda_load(const char *path);
// The loaded table, or NULL when CUDA is unavailable.
const lf_cuda_api *lf_cuda(void);
// Why CUDA is unavailable ("" when it is available).
const char *lf_cuda_unavailable_reason(void);

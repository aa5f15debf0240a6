// The table of CUDA entry points that _C opens with dlopen (see csrc/core/cuda_backend.h).
#include <cstdio>
#include <cuda_runtime.h>

extern "C" {
#include "core/cuda_backend.h"
}

static int device_count(int *count) { return (int)cudaGetDeviceCount(count); }

static int device_name(int device, char *name, size_t size) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return (int)err;
    snprintf(name, size, "%s", prop.name);
    return 0;
}

static const char *error_string(int code) { return cudaGetErrorString((cudaError_t)code); }
static int device_malloc(void **ptr, size_t bytes) { return (int)cudaMalloc(ptr, bytes); }
static int device_free(void *ptr) { return (int)cudaFree(ptr); }
static int memcpy_h2d(void *dst, const void *src, size_t bytes) {
    return (int)cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
}
static int memcpy_d2h(void *dst, const void *src, size_t bytes) {
    return (int)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
}
static int synchronize(void) { return (int)cudaDeviceSynchronize(); }

static const lf_cuda_api api = {
    LF_CUDA_API_VERSION, device_count, device_name, error_string, device_malloc,
    device_free,         memcpy_h2d,   memcpy_d2h,  synchronize,
};

extern "C" __attribute__((visibility("default"))) const lf_cuda_api *lf_cuda_get_api(void) { return &api; }

// The table of CUDA entry points that _C opens with dlopen (see csrc/core/cuda_backend.h).
#include <cstdio>
#include <cuda_runtime.h>

#include "device_model.cuh"
#include "device_runtime.cuh"
#include "matmul.cuh"

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
    .version = LF_CUDA_API_VERSION,
    .desc_size = sizeof(lf_model_desc),
    .api_size = sizeof(lf_cuda_api),
    .device_count = device_count,
    .device_name = device_name,
    .error_string = error_string,
    .malloc = device_malloc,
    .free = device_free,
    .memcpy_h2d = memcpy_h2d,
    .memcpy_d2h = memcpy_d2h,
    .synchronize = synchronize,
    .set_tf32 = matmul_set_tf32,
    .model_create = lf_cuda_model_create,
    .model_free = lf_cuda_model_free,
    .model_forward = lf_cuda_model_forward,
    .model_forward_backward = lf_cuda_model_forward_backward,
    .model_backward = lf_cuda_model_backward,
    .model_device_bytes = lf_cuda_model_device_bytes,
    .model_reserve = lf_cuda_model_reserve,
    .optimizer_begin = lf_cuda_optimizer_begin,
    .optimizer_begin_update = lf_cuda_optimizer_begin_update,
    .optimizer_step = lf_cuda_optimizer_step,
    .optimizer_sync = lf_cuda_optimizer_sync,
    .optimizer_end = lf_cuda_optimizer_end,
    .optimizer_grads = lf_cuda_optimizer_grads,
    .nccl_open = lf_cuda_nccl_open,
    .nccl_version = lf_cuda_nccl_version,
    .nccl_unique_id = lf_cuda_nccl_unique_id,
    .nccl_comm_create = lf_cuda_nccl_comm_create,
    .nccl_comm_free = lf_cuda_nccl_comm_free,
    .optimizer_all_reduce = lf_cuda_optimizer_all_reduce,
    .last_error = lf_cuda_last_error,
};

extern "C" __attribute__((visibility("default"))) const lf_cuda_api *lf_cuda_get_api(void) { return &api; }

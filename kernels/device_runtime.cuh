// The runtime's own handle and helpers, shared by device_model.cu (the device copy, forward and
// training step) and device_optimizer.cu (AdamW on the device). The architectures see only the
// lf_cuda_model of device_model.cuh.
#pragma once

#include "adamw.cuh"
#include "device_model.cuh"

// AdamW on the device for a training run (device_optimizer.cu): while one exists the device copy
// owns the params (forward does not upload the host's) and keeps the gradients it accumulates.
typedef struct {
    float *m, *v;                  // device (param_floats) moments, laid out as dm.params
    lf_adamw_tensor *tensors;      // device [n_params]: param, grad, m, v of each param
    lf_grad_norm_state *norm;      // device: the norm, clip factor and skip of the last step
    lf_grad_norm_state *host_norm; // pinned: where the norm and found_inf come back
    float loss_scale;              // of the update's backward passes (fp16's dynamic loss scale; else 1)
} lf_cuda_optimizer;

// What _C holds: the documented lf_cuda_model (first, so the architectures see only it) and
// what only the runtime uses.
typedef struct {
    lf_cuda_model dm;
    int n_frozen, n_params;          // the host tables at create: another count means a stale copy
    size_t param_floats;             // of dm.params and dm.grads, alignment gaps included
    float *host_params, *host_grads; // pinned (param_floats): one copy each way per step
    int32_t *host_batch;             // pinned, laid out as the device batch arrays
    uint64_t *host_step_seed;        // pinned (1,): the step seed's upload
    lf_cuda_optimizer *optimizer;    // non-NULL during a training run with AdamW on the device
} runtime;

// 0, or code with the message "what: CUDA's words for code"
int lf_cuda_checked(int code, const char *what);
static inline int lf_cuda_checked(cudaError_t err, const char *what) {
    return lf_cuda_checked((int)err, what);
}
// every entry point starts with no message and no launch error pending from elsewhere
void lf_cuda_begin_call(void);
// cudaMalloc / cudaMallocHost (zeroed) of bytes for what, with a message naming it on failure
int lf_cuda_device_alloc(void **ptr, size_t bytes, const char *what);
int lf_cuda_pinned_alloc(void **ptr, size_t bytes, const char *what);
void lf_cuda_pinned_free(void *ptr);
// the host params, each at its device offset, into the pinned staging, then one copy up
int lf_cuda_upload_params(runtime *rt, const lf_model *m);
// the device params down into the host's lf_model params
int lf_cuda_download_params(runtime *rt, lf_model *m);
// frees the optimizer of a run, if any (the params stay on the device, the host's are not updated)
void lf_cuda_optimizer_free(runtime *rt);

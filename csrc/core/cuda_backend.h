// The CUDA backend lives in lorafast/_cuda_kernels.so (built from kernels/), opened with
// dlopen at run time, so that _C imports on machines without a GPU, driver or cuBLAS.
// Each kernel family adds its launchers to lf_cuda_api; kernels/api.cu fills the table.
//
// The model runtime (kernels/device_model.cu) holds a device copy of a host model, described to it
// by models/model_cuda.c with every call as an lf_model_desc (models/model_desc.h: plain data, the
// tables borrowed; the library never reads struct lf_model): frozen weights uploaded once,
// trainable parameters uploaded at every forward, their gradients downloaded and added into the
// host grad buffers; in a training run of train/loop.c AdamW runs on the device instead
// (optimizer_*), the params, moments and gradients staying there.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "models/model_desc.h"
#include "train/adamw.h"

#define LF_CUDA_API_VERSION 8
#define LF_NCCL_ID_BYTES 128 // NCCL_UNIQUE_ID_BYTES of nccl.h

typedef struct lf_cuda_api {
    int version;      // LF_CUDA_API_VERSION of the library that filled the table
    size_t desc_size; // sizeof(lf_model_desc) the library was built with (layout check)
    size_t api_size;  // sizeof(lf_cuda_api) the library was built with (a table of another layout)
    // device management: each returns 0 on success, else a CUDA error code
    int (*device_count)(int *count);
    int (*device_name)(int device, char *name, size_t size);
    const char *(*error_string)(int code);
    int (*malloc)(void **ptr, size_t bytes);
    int (*free)(void *ptr);
    int (*memcpy_h2d)(void *dst, const void *src, size_t bytes);
    int (*memcpy_d2h)(void *dst, const void *src, size_t bytes);
    int (*synchronize)(void);
    // on: f32 matrix products in TF32 (CUBLAS_COMPUTE_32F_FAST_TF32) from now on, process-wide as
    // torch.backends.cuda.matmul.allow_tf32 (TrainingArguments(tf32=True)); off: in full f32 (the default)
    void (*set_tf32)(int on);

    // The model on the device. Each int function returns 0 or a CUDA / lorafast error code,
    // with last_error() saying what failed.
    // A device copy of the model m describes (its frozen weights must be loaded): activations and 2-D frozen
    // weights in dtype (lf_dtype: LF_F32, LF_BF16 or LF_F16), 1-D frozen tensors and trainable params in f32.
    // The tables m points to must outlive it (add LoRA: free it and create a new one); each later call
    // describes the same model again (its batch, mode and step). device: the CUDA device (cuda:device) the
    // copy lives on; every later call for it runs there, from whichever thread (cudaSetDevice at each entry).
    int (*model_create)(const lf_model_desc *m, int dtype, int device, void **out);
    void (*model_free)(void *cuda_model); // NULL: nothing
    // logits: (B, num_labels) of m->batch, on the host; uploads m's params first
    int (*model_forward)(void *cuda_model, const lf_model_desc *m, float *logits);
    // a training step on m->batch: logits (B, num_labels) and the class-weighted cross-entropy
    // (class_weights (num_labels,) or NULL) out; the params' gradients ADDED into m's grads
    int (*model_forward_backward)(void *cuda_model, const lf_model_desc *m, const float *class_weights,
                                  float *logits, float *loss);
    // the backward of the last forward (training mode, the same m->batch) from dlogits (B,
    // num_labels) computed on the host (a compute_loss override): the params' gradients as
    // model_forward_backward's (the loss scale of a training run applied)
    int (*model_backward)(void *cuda_model, const lf_model_desc *m, const float *dlogits);
    size_t (*model_device_bytes)(void *cuda_model); // device memory the copy holds

    // allocates up front what batches of up to max_batch sequences of up to max_len tokens need
    // (batch, logits, activations), so that no step of a run allocates
    int (*model_reserve)(void *cuda_model, int max_batch, int max_len);

    // AdamW on the device for a training run. begin: the host params and the moments (m_moments,
    // v_moments: (sum of the params' numel,) in param order, as lf_train_state's) go up; until end
    // the device copy owns the params (forward uses its own, not the host's) and forward_backward
    // accumulates the gradients on the device (into neither the host grads nor anything it zeroes).
    int (*optimizer_begin)(void *cuda_model, const lf_model_desc *m, const float *m_moments,
                           const float *v_moments);
    // an update begins: the gradients zeroed; its backward passes scale the loss by loss_scale (> 0)
    int (*optimizer_begin_update)(void *cuda_model, float loss_scale);
    // one update of the accumulated gradients (lf_update, train/adamw.h): norm out (before
    // clipping), found_inf out (1: the update was skipped for an inf/NaN norm)
    int (*optimizer_step)(void *cuda_model, const lf_update *u, double *norm, int *found_inf);
    // the device params into m's params, the moments into m_moments, v_moments
    int (*optimizer_sync)(void *cuda_model, const lf_model_desc *m, float *m_moments, float *v_moments);
    void (*optimizer_end)(void *cuda_model); // the run is over: forward uploads the host params again
    // data parallel: the accumulated gradients down into flat (download 1) or up from it (0), flat
    // (sum of the params' numel,) in param order, through the pinned staging; returns synchronized
    int (*optimizer_grads)(void *cuda_model, const lf_model_desc *m, float *flat, int download);

    // Data parallel on the device with NCCL (kernels/device_nccl.cu): nccl_open dlopens libnccl.so.2 at path
    // (once; 0 or an error naming it), nccl_version is its ncclGetVersion (0: not opened). Rank 0 makes the
    // unique id (id: LF_NCCL_ID_BYTES) and hands it to the others; each makes its communicator of nranks on
    // CUDA device `device` (its model's). optimizer_all_reduce, once per update of a training run: the
    // device gradients and *loss become their mean over the ranks (divided by nranks, then one ncclAllReduce
    // sum on the model's stream), waiting at most timeout seconds (then the communicator is aborted).
    int (*nccl_open)(const char *path);
    int (*nccl_version)(void);
    int (*nccl_unique_id)(void *id);
    int (*nccl_comm_create)(const void *id, int nranks, int rank, int device, void **comm);
    void (*nccl_comm_free)(void *comm); // NULL: nothing
    int (*optimizer_all_reduce)(void *cuda_model, void *comm, float *loss, double timeout);
    const char *(*last_error)(void); // message of the library's last failure
} lf_cuda_api;

// LF_OK when the NVIDIA driver (libcuda.so.1) opens; else LF_ECUDA, and lf_cuda_unavailable_reason()
// says so. Asked before opening the kernels library built for it: without a driver that library
// (statically linked cuBLAS, ~150 MiB once mapped and relocated) is never loaded.
int lf_cuda_check_driver(void);
// Opens the kernels library at path (once). Returns LF_OK, or an error whose message says
// why CUDA is unavailable (library missing, cuBLAS missing, no driver, no device).
int lf_cuda_load(const char *path);
// The loaded table, or NULL when CUDA is unavailable.
const lf_cuda_api *lf_cuda(void);
// Why CUDA is unavailable ("" when it is available).
const char *lf_cuda_unavailable_reason(void);

// The model on the device: a device copy of a host model that the CUDA library runs for _C
// (csrc/models/model_cuda.c, through lf_cuda_api).
//
// What lives where:
// - the host keeps everything it had: configs, tables, the packed batch, the f32 params with their
//   grad buffers, training/seed/step. Each call hands the library a description of it
//   (lf_model_desc, csrc/models/model_desc.h: plain data, the tables borrowed for the call), which
//   the architectures read as dm->host; the library never sees struct lf_model.
// - frozen weights are uploaded once, at create: 2-D tensors and linear biases converted to the
//   compute dtype, norm weights and biases to f32, dm->frozen[i] for the host's m->frozen[i].
// - at every forward the params' f32 values are uploaded (the host AdamW updated them), the
//   batch arrays too; after backward the params' gradients come back and are ADDED into the
//   host grads (the host loop accumulates micro-batches there).
//
// An architecture on the device (kernels/models/<arch>.cu) is an lf_cuda_arch table, defined
//   const lf_cuda_arch lf_cuda_arch_encoder = {"encoder", workspace_bytes, forward, backward, chains};
// after including this header (its extern declaration gives the definition external linkage), with
// frozen_chains last.
// The declarations are weak, so the library links and runs before an architecture exists:
// lf_cuda_arch_for returns NULL for it and model_create fails saying it is not implemented yet.
#pragma once

#include <stdint.h>

#include "common.cuh"

extern "C" {
#include "models/model_desc.h"
#include "ops/random.h"
#include "train/adamw.h"
}

typedef struct lf_cuda_model lf_cuda_model;

typedef struct { // one architecture on the device (kernels/models/<arch>.cu)
    const char *name;
    // bytes of dm->work the activations of batch b need (b: the host batch; its sizes T, B, max_len)
    size_t (*workspace_bytes)(const lf_cuda_model *dm, const lf_batch *b);
    // b: the host batch (sizes); its device arrays are in dm->batch. Writes dm->logits: (B, NL) f32,
    // keeps in dm->work what backward needs. Returns 0 or an error code (lf_cuda_set_error for a message).
    int (*forward)(lf_cuda_model *dm, const lf_batch *b);
    // after forward on the same batch: from dm->dlogits (B, NL) f32, accumulates (+=) the params'
    // gradients into dm->grads (zeroed by the runtime before forward)
    int (*backward)(lf_cuda_model *dm, const lf_batch *b);
    // next[i] (all -1 on entry, n_frozen of them): the frozen tensor to upload right after tensor i, in the
    // same allocation, so that the linears reading one input run as one product over their weights side by
    // side (q|k|v); a chain whose tensors do not all take one dtype on the device is uploaded apart
    void (*frozen_chains)(const lf_model_desc *m, int *next);
} lf_cuda_arch;

struct lf_cuda_model {
    // the host model as the current call describes it: cfg, tables, lora, training, step seed, batch
    const lf_model_desc *host;
    lf_dtype dtype;              // activations and 2-D frozen weights
    cudaStream_t stream;         // every launch and copy of the model goes here
    void **frozen;               // [n_frozen] device copy: 2-D and linear biases in dtype, norms in f32
    lf_dtype *frozen_dtype;      // [n_frozen]
    unsigned char *frozen_owned; // [n_frozen] 1: frozen[i] is an allocation, 0: inside a chain's (or NULL)
    float *params, *grads;       // device f32, param i at params + param_offset[i] (same for grads)
    size_t *param_offset;        // [n_params], in floats, multiples of 64 (256-byte aligned)
    // the batch on the device: tokens, positions, token_types (T,), offsets (B+1,), pool_index,
    // labels (B,), with room for cap_T tokens and cap_B sequences
    struct {
        int32_t *tokens, *positions, *token_types, *offsets, *pool_index, *labels;
        int cap_T, cap_B;
    } batch;
    // activations, grown when a larger batch arrives (only then allocated)
    void *work;
    size_t work_bytes;
    // cuBLASLt workspace (32 MiB)
    void *blas_workspace;
    size_t blas_workspace_bytes;
    // device (B, NL), (B, NL), (1,), (NL,); logits and dlogits have room for cap_logits rows
    float *logits, *dlogits, *loss, *class_weights;
    int cap_logits;
    // device (1,): host->step_seed, written before every forward; the dropout keys are read
    // from it on the device (lf_cuda_dropout_key), so a captured step replays with the step's masks
    uint64_t *step_seed;
    const lf_cuda_arch *arch; // NULL: this architecture has no device implementation yet
};

// The weak architecture tables (NULL address until kernels/models/<arch>.cu defines them).
extern const lf_cuda_arch lf_cuda_arch_encoder __attribute__((weak));
extern const lf_cuda_arch lf_cuda_arch_decoder __attribute__((weak));

// the device table of a host architecture (lf_arch_id), or NULL when it has none yet
const lf_cuda_arch *lf_cuda_arch_for(int arch_id);

// ---- helpers for the architectures ----

// param i on the device (f32), or NULL for i < 0 (an absent LoRA / trainable linear)
static inline float *lf_cuda_param(const lf_cuda_model *dm, int i) {
    return i < 0 ? NULL : dm->params + dm->param_offset[i];
}
static inline float *lf_cuda_grad(const lf_cuda_model *dm, int i) {
    return i < 0 ? NULL : dm->grads + dm->param_offset[i];
}

// Dropout streams are the host's (lf_model_dropout_key and lf_lora_key of csrc/models/model.h), read on the
// device: lf_stream_key(*dm->step_seed, site), so the device drops what the CPU drops. LoRA dropout's
// probability is lf_lora_dropout_p(dm->host->training, dm->host->lora).
static inline lf_cuda_key lf_cuda_dropout_key(const lf_cuda_model *dm, int site) {
    return {dm->step_seed, (uint64_t)site};
}
static inline lf_cuda_key lf_cuda_lora_key(const lf_cuda_model *dm, const lf_linear *l) {
    return lf_cuda_dropout_key(dm, lf_lora_site(l));
}

// Sets the library's last error message (printf format) and returns code.
int lf_cuda_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- the entry points of lf_cuda_api (core/cuda_backend.h), filled in by kernels/api.cu ----

int lf_cuda_model_create(const lf_model_desc *m, int dtype, int device, void **out);
void lf_cuda_model_free(void *cuda_model);
int lf_cuda_model_forward(void *cuda_model, const lf_model_desc *m, float *logits);
int lf_cuda_model_backward(void *cuda_model, const lf_model_desc *m, const float *dlogits);
int lf_cuda_model_forward_backward(void *cuda_model, const lf_model_desc *m, const float *class_weights,
                                   float *logits, float *loss);
size_t lf_cuda_model_device_bytes(void *cuda_model);
int lf_cuda_model_reserve(void *cuda_model, int max_batch, int max_len);
// AdamW on the device (device_optimizer.cu), see lf_cuda_api
int lf_cuda_optimizer_begin(void *cuda_model, const lf_model_desc *m, const float *m_moments,
                            const float *v_moments);
int lf_cuda_optimizer_begin_update(void *cuda_model, float loss_scale);
int lf_cuda_optimizer_step(void *cuda_model, const lf_update *u, double *norm, int *found_inf);
int lf_cuda_optimizer_sync(void *cuda_model, const lf_model_desc *m, float *m_moments, float *v_moments);
void lf_cuda_optimizer_end(void *cuda_model);
int lf_cuda_optimizer_grads(void *cuda_model, const lf_model_desc *m, float *flat, int download);
const char *lf_cuda_last_error(void);

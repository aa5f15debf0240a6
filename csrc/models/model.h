// The C interface of a sequence-classification model with LoRA, shared by every
// architecture (encoder.c: BERT/RoBERTa; decoder.c: Llama/Mistral) and by the training loop.
//
// A model has
// - a config (sizes, eps, dropout probabilities, pad id, number of labels);
// - frozen weights: a table of named tensors (HF checkpoint names) whose data is borrowed
//   (numpy arrays / mmap'd safetensors kept alive by the owner), f32, f16 or bf16, possibly
//   not materialized (data NULL: enough to count parameters);
// - trainable parameters: a table of named f32 tensors (names = the keys peft writes into
//   adapter_model.safetensors) with data and grad buffers owned by the model, and a
//   no-weight-decay flag as HF's Trainer decides it (biases and LayerNorm weights);
// - a workspace for activations, planned from the largest batch seen (grown, never
//   shrunk, only when a larger batch arrives; nothing else is allocated in a step).
//
// A batch is packed: the tokens of B sequences back to back, no padding.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "models/model_desc.h"
#include "ops/crossentropy.h"
#include "ops/matmul_bf16.h"
#include "ops/random.h"
#include "ops/weight.h"
#include "train/adamw.h"

typedef struct lf_model lf_model;

// What an architecture provides (encoder.c, decoder.c).
typedef struct {
    const char *name;
    // fills the frozen and trainable tables for the config (no LoRA yet)
    int (*build)(lf_model *m);
    // floats of activation workspace for a batch of T tokens, B sequences, longest max_len
    size_t (*workspace_floats)(const lf_model *m, int T, int B, int max_len);
    // logits: (B, num_labels); keeps what backward needs in the workspace
    int (*forward)(lf_model *m, const lf_batch *batch, float *logits);
    // accumulates parameter grads from dlogits: (B, num_labels), after forward on the same batch
    int (*backward)(lf_model *m, const lf_batch *batch, const float *dlogits);
    // the LoRA-able linears: names (module suffix, e.g. "attention.self.query"), count per layer
    const char *const *lora_targets;
    int n_lora_targets;
} lf_arch;

struct lf_model {
    lf_model_config cfg;
    const lf_arch *arch;
    lf_frozen *frozen;
    int n_frozen, cap_frozen;
    lf_param *params;
    int n_params, cap_params;
    lf_linear *linears; // the architecture's linears, in its own order
    int n_linears, cap_linears;
    lf_lora_config lora;       // r == 0: no LoRA
    unsigned lora_target_mask; // bit i: arch->lora_targets[i] has LoRA
    int training;              // dropout on
    uint64_t seed, step;       // dropout streams: key(seed, step, site)
    float *work;               // activations, 64-byte aligned (models/plan.h)
    size_t work_floats;
    uint64_t frozen_version; // counts changes of the frozen weights (caches of converted copies)
    int32_t *batch_ints;     // packed batch arrays
    size_t batch_ints_cap;
    lf_batch batch;
    void *arch_state; // per-architecture pointers into work (set by forward)

    int gradient_checkpointing; // keep one activation per layer only; backward recomputes the layer
    int inference;              // the current pass is a forward alone (lf_model_forward): keep nothing

    // The CPU's products: LF_F32 (default, HF's float32 numbers) or LF_BF16 (autocast's: each frozen
    // weight packed once for oneDNN, ops/matmul_bf16.h; LoRA, head, norms, softmax, loss stay f32)
    lf_dtype cpu_dtype;
    matmul_bf16_weight **bf16; // (n_linears,) a frozen linear's packed weight, NULL for a trained one
    uint64_t bf16_version;     // the frozen_version the packs were made from
    uint16_t *bf16_scratch;    // in work: a product's activations rounded to bf16
    int bf16_rc;               // LF_OK, or the error of a bf16 product of the current pass

    void *cuda_model;    // the device copy (kernels/device_model.cuh) when on CUDA, else NULL
    lf_dtype cuda_dtype; // of its activations and 2-D frozen weights
    int cuda_device;     // the CUDA device it lives on (cuda:cuda_device)

    float *reduce_buf; // data parallel: (sum of the params' numel + 1,) an update's gradients and loss
    int64_t reduce_floats;
};

// Creates a model of cfg.arch with its tables (frozen data unset). NULL + lf_error on failure.
lf_model *lf_model_create(const lf_model_config *cfg);
void lf_model_free(lf_model *m);

// Table building (used by the architectures' build functions); return the new index or -1.
int lf_model_add_frozen(lf_model *m, const char *name, int ndim, int64_t d0, int64_t d1);
int lf_model_add_param(lf_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int no_decay);
int lf_model_find_frozen(const lf_model *m, const char *name);
int lf_model_find_param(const lf_model *m, const char *name);
// Adds a linear; with_bias: also its bias. trainable: weight and bias are params, else frozen.
int lf_model_add_linear(lf_model *m, const char *prefix, int in, int out, int with_bias, int trainable,
                        int site);
// Marks linear i as LoRA target `target` (arch->lora_targets) of transformer layer `layer`.
void lf_model_set_layer_linear(lf_model *m, int i, int layer, int target);
// Allocates data and grad (zeroed) of the params added since the last call; existing ones are kept.
int lf_model_plan_params(lf_model *m);

// Points frozen tensor i at data (borrowed) after checking it is finite. LF_EINVAL names it.
int lf_model_set_frozen(lf_model *m, int index, const void *data, lf_dtype dtype);
// LF_EINVAL naming the first frozen tensor whose data is unset
int lf_model_check_ready(const lf_model *m);

// Adds LoRA A/B params to the linears whose target bit is set (peft names with prefix
// "base_model.model."); renames trainable params to peft keys. A: kaiming-uniform(a=sqrt 5)
// from seed, B: zeros. Called once.
int lf_model_add_lora(lf_model *m, lf_lora_config lora, unsigned target_mask, uint64_t seed);

// Unpads a padded batch: ids, mask: (B, L) int64, token_types: (B, L) or NULL; labels (B,) or
// NULL. Validates ranges and fills m->batch (grown when needed). LF_EINVAL names what is wrong.
int lf_unpad_batch(lf_model *m, const int64_t *ids, const int64_t *mask, const int64_t *token_types,
                   const int64_t *labels, int B, int L);

// Packs examples rows[0 .. count-1] of a tokenized dataset (ids: int32, offsets: (n+1,) int64,
// labels: (n,) int32 or NULL; validated at hand-over, lf_dataset_check) into m->batch, with the
// positions and pooled tokens lf_unpad_batch gives the same rows right-padded.
int lf_model_load_examples(lf_model *m, const int32_t *ids, const int64_t *offsets, const int32_t *labels,
                           const int64_t *rows, int count);
// dropout on (training) or off; the dropout streams of the next forward are keyed by (seed, step)
void lf_model_set_mode(lf_model *m, int training, uint64_t step);

// logits: (B, num_labels) for m->batch
int lf_model_forward(lf_model *m, float *logits);
// Training step on m->batch: logits (B, num_labels) out, class-weighted cross-entropy loss
// (weights (num_labels,) or NULL), grads accumulated into the params' grad buffers. With loss_fn
// the loss and its gradient come from loss_fn(loss_ctx, ...) instead (on CUDA: the logits come
// down, the gradient goes up).
int lf_model_forward_backward(lf_model *m, const float *class_weights, lf_logits_loss_fn loss_fn,
                              void *loss_ctx, float *logits, float *loss);
void lf_model_zero_grad(lf_model *m);

// A training run (train/loop.c), in this order; this file decides where the optimizer runs: on
// the CPU, clipping and AdamW over the params' grads; on CUDA, on the device copy, whose params,
// moments and gradients stay there until lf_model_run_sync. m_moments, v_moments: AdamW's
// (sum of the params' numel,) moments in param order.
// begin: memory planned for batches of up to max_batch sequences, max_tokens tokens, longest
// max_len (no step of the run allocates); fp16 loss_scaling needs CUDA; external_loss: a loss
// computed outside (lf_model_forward_backward's loss_fn).
int lf_model_run_begin(lf_model *m, const float *m_moments, const float *v_moments, int max_batch,
                       int max_tokens, int max_len, int loss_scaling, int external_loss);
// an update begins: the gradients zeroed; its backward passes scale the loss by loss_scale
int lf_model_update_begin(lf_model *m, float loss_scale);
// the update of the accumulated gradients (train/adamw.h); norm: before clipping
int lf_model_update(lf_model *m, const lf_update *u, float *m_moments, float *v_moments, double *norm,
                    int *found_inf);
// Data parallel (train/loop.h's grad_reduce): buf (n,) holds an update's gradients (params in table
// order, flat) and, last, its loss, in f32; the callee replaces them by their mean over the ranks.
// With the reduction on the device (on_device: NCCL, lf_model_cuda_all_reduce) buf holds the loss alone
// and the callee reduces the device gradients itself. LF_OK, or an error code already recorded.
typedef int (*lf_reduce_fn)(void *ctx, float *buf, int64_t n);
// before the run's first step: the flat buffer planned (kept for the model's life)
int lf_model_reduce_begin(lf_model *m);
// after the update's micro-batches, before lf_model_update: its gradients and *loss replaced by
// their mean over the ranks in one call of reduce (on CUDA the gradients go through the host, unless
// on_device)
int lf_model_reduce_grads(lf_model *m, lf_reduce_fn reduce, void *ctx, int on_device, double *loss);
// In a training run on CUDA: the device gradients and *loss become their mean over the ranks of comm (an
// NCCL communicator of the kernels library, core/cuda_backend.h), waiting at most timeout seconds.
int lf_model_cuda_all_reduce(lf_model *m, void *comm, float *loss, double timeout);
// the params and moments the run reached, on the host (nothing to do on the CPU)
int lf_model_run_sync(lf_model *m, float *m_moments, float *v_moments);
void lf_model_run_end(lf_model *m);

// The device (models/model_cuda.c). On CUDA, lf_model_forward / lf_model_forward_backward run
// on the device copy: the params are uploaded at every call, logits, loss and the params'
// gradients come back (the gradients added into the host grad buffers). In a training run the
// loop runs AdamW on the device instead (lf_model_cuda_optimizer_*: see lf_cuda_api).
// The CPU's compute dtype: LF_F32 or LF_BF16 (frozen 2-D weights packed for oneDNN's bf16 matmul now,
// and again after a change of the frozen weights). LF_EINVAL for another dtype.
int lf_model_set_cpu_dtype(lf_model *m, lf_dtype dtype);

// Makes (or remakes, for another dtype or device) the device copy on CUDA device `device` (cuda:device):
// dtype LF_F32, LF_BF16 or LF_F16; the frozen weights must be loaded (model.c checks, then calls
// lf_model_cuda_create). Needs the CUDA backend loaded (core/cuda_backend.h); LF_ECUDA says why not
// (a device this process does not see, too).
int lf_model_to_cuda(lf_model *m, lf_dtype dtype, int device);
int lf_model_cuda_create(lf_model *m, lf_dtype dtype, int device);
// Frees the device copy (nothing when there is none).
void lf_model_to_cpu(lf_model *m);
// Makes the device copy again after the tables changed (add LoRA); nothing when on the CPU.
int lf_model_cuda_refresh(lf_model *m);
int lf_model_cuda_forward(lf_model *m, float *logits);
int lf_model_cuda_forward_backward(lf_model *m, const float *class_weights, float *logits, float *loss);
// the backward of the last (training) forward from dlogits (B, num_labels) on the host
int lf_model_cuda_backward(lf_model *m, const float *dlogits);
// the training run's optimizer on the device (lf_model_run_* on CUDA)
int lf_model_cuda_optimizer_begin(lf_model *m, const float *m_moments, const float *v_moments, int max_batch,
                                  int max_len);
int lf_model_cuda_optimizer_begin_update(lf_model *m, float loss_scale);
int lf_model_cuda_optimizer_step(lf_model *m, const lf_update *u, double *norm, int *found_inf);
int lf_model_cuda_optimizer_sync(lf_model *m, float *m_moments, float *v_moments);
void lf_model_cuda_optimizer_end(lf_model *m);
// data parallel: the device gradients down into flat (download 1) or up from it (0), param order
int lf_model_cuda_grads(lf_model *m, float *flat, int download);
// device memory the device copy holds (0 on the CPU)
size_t lf_model_device_bytes(const lf_model *m);

// Helpers for architectures
int lf_model_reserve(lf_model *m, size_t floats); // grows m->work
// floats a linear of in features saves of its LoRA branch for backward (ops/lora.h), T tokens
size_t lf_lora_saved_floats(const lf_model *m, int T, int in);
// out: (T, out) = x @ W^T + b (+ the LoRA branch, its lora_saved written); xd: (T, in) scratch
void lf_linear_forward(lf_model *m, const lf_linear *l, float *out, float *lora_saved, float *xd, const float *x,
                       int T, float *scratch);
// dx: (T, in) = d x (accumulate: dx += ), or NULL; the trainable weights' gradients +=
void lf_linear_backward(lf_model *m, const lf_linear *l, float *dx, int accumulate, float *du, float *xd,
                        const float *dout, const float *x, const float *lora_saved, int T, float *scratch);
lf_weight lf_linear_weight(const lf_model *m, const lf_linear *l);
const float *lf_linear_bias(const lf_model *m, const lf_linear *l);

// What a pass keeps of each layer: every activation (training), one shared set and each layer's
// output (gradient checkpointing: backward recomputes the layer), or one shared set and two
// outputs in turn (a forward alone: nothing for backward, the workspace of inference)
typedef enum { LF_KEEP_ALL = 0, LF_KEEP_OUTPUTS = 1, LF_KEEP_NONE = 2 } lf_keep;
static inline lf_keep lf_model_keep(const lf_model *m) {
    return m->inference ? LF_KEEP_NONE : m->gradient_checkpointing ? LF_KEEP_OUTPUTS : LF_KEEP_ALL;
}

// lf_lowest_lora_layer (models/model_desc.h) of m: backward (CPU and CUDA) stops
// there, the frozen layers below need none
static inline int lf_model_lowest_lora_layer(const lf_model *m) {
    return lf_lowest_lora_layer(m->linears, m->n_linears, m->cfg.num_layers);
}

// The per-step part of every dropout stream: this step's key of a site is lf_stream_key(it, site). The
// CUDA model reads it on the device (kernels/device_model.cuh), so a captured step replays with new masks.
static inline uint64_t lf_model_step_seed(const lf_model *m) {
    return m->seed ^ lf_mix64(m->step + 0x51ed270b27a0f3ULL);
}

// The dropout stream key of a site for this step (the CPU and the CUDA models draw the same masks)
static inline uint64_t lf_model_dropout_key(const lf_model *m, int site) {
    return lf_stream_key(lf_model_step_seed(m), (uint64_t)site);
}

// LoRA dropout: its probability in this mode, and its streams, apart from the hidden dropout sites
static inline float lf_lora_dropout(const lf_model *m) { return lf_lora_dropout_p(m->training, m->lora); }
static inline uint64_t lf_lora_key(const lf_model *m, const lf_linear *l) {
    return lf_model_dropout_key(m, lf_lora_site(l));
}

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

typedef struct lf_cuda_graphs lf_cuda_graphs; // the captured steps of a model (device_graph.cu)

// What _C holds: the documented lf_cuda_model (first, so the architectures see only it) and
// what only the runtime uses.
typedef struct {
    lf_cuda_model dm;
    lf_model_desc desc;  // the current call's description of the host model (dm.host); its table
                         // counts are the create's (another count: a stale copy, lf_cuda_describe)
    size_t param_floats; // of dm.params and dm.grads, alignment gaps included
    float *host_params, *host_grads; // pinned (param_floats): one copy each way per step
    int32_t *host_batch;             // pinned, laid out as the device batch arrays
    float *host_dlogits;             // pinned (cap_host_dlogits,): a loss gradient computed on the host
    size_t cap_host_dlogits;
    uint64_t *host_step_seed;     // pinned (1,): the step seed's upload
    lf_cuda_optimizer *optimizer; // non-NULL during a training run with AdamW on the device
    lf_cuda_graphs *graphs;       // NULL: steps run launch by launch (LORAFAST_CUDA_GRAPHS=0, or
                                  // a capture failed)
    int device;                   // the CUDA device the copy lives on (cuda:device)
} runtime;

// 0, or code with the message "what: CUDA's words for code"
int lf_cuda_checked(int code, const char *what);
static inline int lf_cuda_checked(cudaError_t err, const char *what) {
    return lf_cuda_checked((int)err, what);
}
// The call's description of the host model (m) becomes dm.host: an error when it describes another
// model than the device copy's (other tables) or changed tables (a stale copy)
int lf_cuda_describe(runtime *rt, const lf_model_desc *m);
// every entry point starts with no message and no launch error pending from elsewhere
void lf_cuda_begin_call(void);
// lf_cuda_begin_call, then the calling thread onto the model's device (cudaSetDevice: the current
// device is per host thread, and any thread may call): every entry point that takes a model
int lf_cuda_enter(runtime *rt);
// cudaMalloc / cudaMallocHost (zeroed) of bytes for what, with a message naming it on failure
int lf_cuda_device_alloc(void **ptr, size_t bytes, const char *what);
int lf_cuda_pinned_alloc(void **ptr, size_t bytes, const char *what);
void lf_cuda_pinned_free(void *ptr);
// the host params, each at its device offset, into the pinned staging, then one copy up
int lf_cuda_upload_params(runtime *rt, const lf_model_desc *m);
// the device params down into the host's lf_model params
int lf_cuda_download_params(runtime *rt, const lf_model_desc *m);
// frees the optimizer of a run, if any (the params stay on the device, the host's are not updated)
void lf_cuda_optimizer_free(runtime *rt);

// ---- NCCL (device_nccl.cu): the entry points of lf_cuda_api's nccl_* and optimizer_all_reduce ----

typedef struct lf_nccl_comm lf_nccl_comm;
int lf_cuda_nccl_open(const char *path);
int lf_cuda_nccl_version(void);
int lf_cuda_nccl_unique_id(void *id);
int lf_cuda_nccl_comm_create(const void *id, int nranks, int rank, int device, void **out);
void lf_cuda_nccl_comm_free(void *comm);
int lf_cuda_optimizer_all_reduce(void *cuda_model, void *comm, float *loss, double timeout);

// ---- CUDA graphs of the steps (device_graph.cu) ----

// Everything a graph's replay cannot change: another value is another graph.
typedef struct {
    int backward; // 0: forward only; 1: forward, cross-entropy and backward
    int T, B,
        max_len; // the padded batch (lf_cuda_graph_batch: B or, with a ghost, B - 1 sequences of its own)
    int training, checkpointing, weighted;
    float loss_scale, lora_dropout;
    int tf32; // matmul_tf32(): the f32 products' compute type is frozen in the graph
} lf_cuda_graph_shape;

// 0 when LORAFAST_CUDA_GRAPHS=0 asks for launches one by one
int lf_cuda_graphs_wanted(void);
int lf_cuda_graphs_create(lf_cuda_graphs **out);
// destroys every graph (the buffers they use moved)
void lf_cuda_graphs_clear(lf_cuda_graphs *g);
void lf_cuda_graphs_free(lf_cuda_graphs *g);
// The sizes (T, B, max_len; no arrays) a graph runs batch b as: T up to its bucket, by a ghost sequence
// appended when T is not on one already (B one more then); max_len up to a multiple of 32.
lf_batch lf_cuda_graph_batch(const lf_batch *b);
// sizes at least those of lf_cuda_graph_batch for every batch of at most max_batch sequences of at
// most max_len tokens
lf_batch lf_cuda_graph_batch_bound(int max_batch, int max_len);
// the ghost sequence of padded (lf_cuda_graph_batch(b)) written into arrays laid out as a batch's
// (tokens, positions, token_types: (padded T,), offsets: (padded B + 1,), pool_index, labels:
// (padded B,)) after b's own values: the ghost's tokens repeat b's first token
void lf_cuda_graph_fill_ghost(const lf_batch *b, const lf_batch *padded, int32_t *tokens, int32_t *positions,
                              int32_t *token_types, int32_t *offsets, int32_t *pool_index, int32_t *labels);
// the device work of a step (enqueued on dm.stream, no synchronization, no allocation)
typedef int (*lf_cuda_step_body)(runtime *rt, void *ctx);
// runs body through the graph of shape (rt->graphs non-NULL): directly the first time a shape comes,
// captured into its graph the second time, replayed from then on. When
// CUDA cannot capture it, graphs go off for the model (rt->graphs NULL, a line on stderr) and body
// runs directly. Returns body's error or a launch error.
int lf_cuda_graph_run(runtime *rt, const lf_cuda_graph_shape *shape, lf_cuda_step_body body, void *ctx);

// The model runtime on the device (see device_model.cuh): creates the device copy of a host
// model, runs a forward or a training step of an architecture on it, and moves the params,
// the batch, the logits, the loss and the params' gradients between host and device.
#include "device_model.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.cuh"
#include "convert.cuh"
#include "crossentropy.cuh"
#include "device_runtime.cuh"
#include "matmul.cuh"

static const size_t STAGING_BYTES = (size_t)64 << 20;        // frozen weights go up in chunks of this
static const size_t BLAS_WORKSPACE_BYTES = (size_t)32 << 20; // cuBLASLt's workspace
static const size_t PARAM_ALIGN_FLOATS = 64;                 // params start 256-byte aligned

// ---- errors ----

static char last_error_message[1024];

int lf_cuda_set_error(int code, const char *fmt, ...) {
    char message[sizeof last_error_message]; // the arguments may point into last_error_message
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    memcpy(last_error_message, message, sizeof message);
    return code;
}

const char *lf_cuda_last_error(void) { return last_error_message; }

// 0, or code with the message "what: CUDA's words for code"
int lf_cuda_checked(int code, const char *what) {
    if (code == 0) return 0;
    (void)cudaGetLastError(); // a failed call's error is not left for the next launch to report
    return lf_cuda_set_error(code, "%s: %s", what, cudaGetErrorString((cudaError_t)code));
}

// every entry point starts with no message and no launch error pending from elsewhere
void lf_cuda_begin_call(void) {
    last_error_message[0] = '\0';
    (void)cudaGetLastError();
}

int lf_cuda_enter(runtime *rt) {
    lf_cuda_begin_call();
    return lf_cuda_checked(cudaSetDevice(rt->device), "selecting the model's CUDA device");
}

// 0 when device is one of the devices this process sees, else an error naming it and the count
static int select_device(int device) {
    int count = 0;
    int rc = lf_cuda_checked(cudaGetDeviceCount(&count), "counting the CUDA devices");
    if (rc != 0) return rc;
    if (device < 0 || device >= count)
        return lf_cuda_set_error((int)cudaErrorInvalidDevice,
                                 "device cuda:%d does not exist: this process sees %d CUDA device%s "
                                 "(cuda:0 to cuda:%d; CUDA_VISIBLE_DEVICES limits them)",
                                 device, count, count == 1 ? "" : "s", count - 1);
    return lf_cuda_checked(cudaSetDevice(device), "selecting the CUDA device");
}

// ---- the handle ----

static size_t batch_ints(int cap_T, int cap_B) { return 3 * (size_t)cap_T + 3 * (size_t)cap_B + 1; }

int lf_cuda_device_alloc(void **ptr, size_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes == 0) return 0;
    cudaError_t err = cudaMalloc(ptr, bytes);
    if (err == cudaSuccess) return 0;
    *ptr = NULL;
    (void)cudaGetLastError();
    return lf_cuda_set_error((int)err, "allocating %zu bytes of device memory for %s: %s", bytes, what,
                             cudaGetErrorString(err));
}

int lf_cuda_pinned_alloc(void **ptr, size_t bytes, const char *what) {
    *ptr = NULL;
    if (bytes == 0) return 0;
    cudaError_t err = cudaMallocHost(ptr, bytes);
    if (err != cudaSuccess) {
        *ptr = NULL;
        (void)cudaGetLastError();
        return lf_cuda_set_error((int)err, "allocating %zu bytes of pinned host memory for %s: %s", bytes,
                                 what, cudaGetErrorString(err));
    }
    memset(*ptr, 0, bytes);
    return 0;
}

void lf_cuda_pinned_free(void *ptr) {
    if (ptr != NULL) (void)cudaFreeHost(ptr);
}

const lf_cuda_arch *lf_cuda_arch_for(int arch_id) {
    switch (arch_id) {
    case LF_ARCH_BERT:
    case LF_ARCH_ROBERTA:
        return &lf_cuda_arch_encoder; // NULL while no file defines it (weak)
    case LF_ARCH_LLAMA:
    case LF_ARCH_MISTRAL:
        return &lf_cuda_arch_decoder;
    default:
        return NULL;
    }
}

// ---- create: frozen weights, params ----

// dst: (n,) of dst_dtype on the device = src: (n,) of src_dtype on the host, converted on the device
// through *staging (allocated at the first conversion, STAGING_BYTES)
static int upload_converted(void *dst, lf_dtype dst_dtype, const void *src, lf_dtype src_dtype, int64_t n,
                            void **staging, cudaStream_t stream, const char *name) {
    char what[640];
    snprintf(what, sizeof what, "uploading weight %s", name);
    size_t src_size = lf_cuda_dtype_size(src_dtype), dst_size = lf_cuda_dtype_size(dst_dtype);
    if (src_dtype == dst_dtype)
        return lf_cuda_checked(
            cudaMemcpyAsync(dst, src, (size_t)n * src_size, cudaMemcpyHostToDevice, stream), what);
    if (*staging == NULL) {
        int rc = lf_cuda_device_alloc(staging, STAGING_BYTES, "the upload staging buffer");
        if (rc != 0) return rc;
    }
    int64_t chunk = (int64_t)(STAGING_BYTES / src_size);
    for (int64_t off = 0; off < n; off += chunk) {
        int64_t count = n - off < chunk ? n - off : chunk;
        // stream order: this copy waits for the previous chunk's conversion out of the staging buffer
        int rc = lf_cuda_checked(cudaMemcpyAsync(*staging, (const char *)src + (size_t)off * src_size,
                                                 (size_t)count * src_size, cudaMemcpyHostToDevice, stream),
                                 what);
        if (rc == 0)
            rc = lf_cuda_checked(convert_cuda((char *)dst + (size_t)off * dst_size, dst_dtype, *staging,
                                              src_dtype, count, stream),
                                 what);
        if (rc != 0) return rc;
    }
    return 0;
}

// 1 when frozen tensor i is the bias of a linear (the products take their bias in the compute dtype)
static int is_linear_bias(const lf_model_desc *m, int i) {
    for (int k = 0; k < m->n_linears; k++)
        if (m->linears[k].bias == i) return 1;
    return 0;
}

// the architecture's chains of frozen tensors (next[i] > i: uploaded right after i, or -1), each chain of
// one device dtype, a tensor in one chain at most; head[i]: 1 where no tensor comes before i
static void frozen_chains(const lf_cuda_model *dm, const lf_model_desc *m, int *next, unsigned char *head) {
    for (int i = 0; i < m->n_frozen; i++)
        next[i] = -1, head[i] = 1;
    if (dm->arch->frozen_chains != NULL) dm->arch->frozen_chains(m, next);
    for (int i = 0; i < m->n_frozen; i++) {
        const int j = next[i];
        if (j <= i || j >= m->n_frozen || !head[j] || dm->frozen_dtype[i] != dm->frozen_dtype[j])
            next[i] = -1;
        else
            head[j] = 0;
    }
}

// every frozen tensor of m, as stored, converted on the device: 2-D tensors and the linears'
// biases to dm->dtype, the other 1-D tensors (norm weights and biases) to f32; the tensors of a chain
// (frozen_chains) one after the other in one allocation
static int upload_frozen(runtime *rt, const lf_model_desc *m) {
    lf_cuda_model *dm = &rt->dm;
    size_t n = m->n_frozen > 0 ? (size_t)m->n_frozen : 1;
    dm->frozen = (void **)calloc(n, sizeof *dm->frozen);
    dm->frozen_dtype = (lf_dtype *)calloc(n, sizeof *dm->frozen_dtype);
    dm->frozen_owned = (unsigned char *)calloc(n, 1);
    int *next = (int *)calloc(n, sizeof *next);
    if (dm->frozen == NULL || dm->frozen_dtype == NULL || dm->frozen_owned == NULL || next == NULL) {
        free(next);
        return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory for the frozen table");
    }
    for (int i = 0; i < m->n_frozen; i++)
        dm->frozen_dtype[i] = m->frozen[i].ndim == 2 || is_linear_bias(m, i) ? dm->dtype : LF_F32;
    frozen_chains(dm, m, next, dm->frozen_owned);
    void *staging = NULL;
    int rc = 0;
    for (int i = 0; rc == 0 && i < m->n_frozen; i++) {
        if (!dm->frozen_owned[i]) continue; // placed with its chain's head
        const size_t E = lf_cuda_dtype_size(dm->frozen_dtype[i]);
        size_t bytes = 0;
        for (int j = i; j >= 0; j = next[j])
            bytes += (size_t)m->frozen[j].numel * E;
        rc = lf_cuda_device_alloc(&dm->frozen[i], bytes, m->frozen[i].name);
        size_t off = 0;
        for (int j = i; rc == 0 && j >= 0; j = next[j]) {
            const lf_frozen *f = &m->frozen[j];
            dm->frozen[j] = (char *)dm->frozen[i] + off;
            off += (size_t)f->numel * E;
            rc = upload_converted(dm->frozen[j], dm->frozen_dtype[j], f->w.data, f->w.dtype, f->numel,
                                  &staging, dm->stream, f->name);
        }
    }
    free(next);
    if (staging != NULL) { // the last conversions read it: wait for them before freeing it
        int sync = lf_cuda_checked(cudaStreamSynchronize(dm->stream), "uploading the frozen weights");
        if (rc == 0) rc = sync;
        (void)cudaFree(staging);
    }
    return rc;
}

static size_t aligned_floats(int64_t n) {
    return ((size_t)n + PARAM_ALIGN_FLOATS - 1) / PARAM_ALIGN_FLOATS * PARAM_ALIGN_FLOATS;
}

// device params and grads, param i at param_offset[i]; pinned staging of the same layout
static int plan_params(runtime *rt, const lf_model_desc *m) {
    lf_cuda_model *dm = &rt->dm;
    dm->param_offset = (size_t *)calloc(m->n_params > 0 ? (size_t)m->n_params : 1, sizeof *dm->param_offset);
    if (dm->param_offset == NULL)
        return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory for the param table");
    size_t total = 0;
    for (int i = 0; i < m->n_params; i++) {
        dm->param_offset[i] = total;
        total += aligned_floats(m->params[i].numel);
    }
    rt->param_floats = total;
    size_t bytes = total * sizeof(float);
    int rc = lf_cuda_device_alloc((void **)&dm->params, bytes, "the trainable params");
    // the gradients, then a slot for the update's loss (the NCCL all-reduce reduces both in one call)
    if (rc == 0)
        rc = lf_cuda_device_alloc((void **)&dm->grads, bytes + sizeof(float), "the params' gradients");
    if (rc == 0) rc = lf_cuda_pinned_alloc((void **)&rt->host_params, bytes, "the params' upload");
    if (rc == 0) rc = lf_cuda_pinned_alloc((void **)&rt->host_grads, bytes, "the gradients' download");
    return rc;
}

static int check_frozen_loaded(const lf_model_desc *m) {
    for (int i = 0; i < m->n_frozen; i++)
        if (m->frozen[i].w.data == NULL)
            return lf_cuda_set_error((int)cudaErrorInvalidValue,
                                     "weight %s is not loaded (model built with materialize=False?)",
                                     m->frozen[i].name);
    return 0;
}

int lf_cuda_model_create(const lf_model_desc *m, int dtype, int device, void **out) {
    lf_cuda_begin_call();
    *out = NULL;
    if (!lf_dtype_is_float((lf_dtype)dtype))
        return lf_cuda_set_error((int)cudaErrorInvalidValue,
                                 "compute dtype %d is not float32, bfloat16 or float16", dtype);
    const lf_cuda_arch *arch = lf_cuda_arch_for(m->cfg.arch);
    if (arch == NULL)
        return lf_cuda_set_error((int)cudaErrorNotSupported,
                                 "the CUDA %s model is not implemented yet: keep the model on the CPU "
                                 "(TrainingArguments(use_cpu=True) for the Trainer)",
                                 m->arch_name);
    if (!attention_head_size_supported(m->cfg.head_dim))
        return lf_cuda_set_error(
            (int)cudaErrorNotSupported,
            "the CUDA attention is built for head sizes 32, 64, 80, 96 and 128; this model's "
            "is %d: keep it on the CPU",
            m->cfg.head_dim);
    int rc = check_frozen_loaded(m);
    if (rc == 0) rc = select_device(device);
    if (rc != 0) return rc;
    runtime *rt = (runtime *)calloc(1, sizeof *rt);
    if (rt == NULL) return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory");
    rt->device = device;
    lf_cuda_model *dm = &rt->dm;
    rt->desc = *m;
    dm->host = &rt->desc;
    dm->dtype = (lf_dtype)dtype;
    dm->arch = arch;
    rc = lf_cuda_checked(cudaStreamCreateWithFlags(&dm->stream, cudaStreamNonBlocking),
                         "creating a CUDA stream");
    if (rc == 0 && lf_cuda_graphs_wanted()) rc = lf_cuda_graphs_create(&rt->graphs);
    if (rc == 0) rc = upload_frozen(rt, m);
    if (rc == 0) rc = plan_params(rt, m);
    if (rc == 0) {
        rc = lf_cuda_device_alloc(&dm->blas_workspace, BLAS_WORKSPACE_BYTES, "the cuBLASLt workspace");
        dm->blas_workspace_bytes = rc == 0 ? BLAS_WORKSPACE_BYTES : 0;
    }
    if (rc == 0) rc = lf_cuda_device_alloc((void **)&dm->loss, sizeof(float), "the loss");
    if (rc == 0) rc = lf_cuda_device_alloc((void **)&dm->step_seed, sizeof(uint64_t), "the step seed");
    if (rc == 0) rc = lf_cuda_pinned_alloc((void **)&rt->host_step_seed, sizeof(uint64_t), "the step seed");
    if (rc == 0)
        rc = lf_cuda_device_alloc((void **)&dm->class_weights, (size_t)m->cfg.num_labels * sizeof(float),
                                  "the class weights");
    if (rc == 0) rc = lf_cuda_checked(cudaStreamSynchronize(dm->stream), "uploading the model");
    if (rc != 0) {
        lf_cuda_model_free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

void lf_cuda_model_free(void *cuda_model) {
    if (cuda_model == NULL) return;
    runtime *rt = (runtime *)cuda_model;
    lf_cuda_model *dm = &rt->dm;
    (void)cudaSetDevice(rt->device); // frees on the model's device, from whichever thread (keeps the message)
    if (dm->stream != NULL) (void)cudaStreamSynchronize(dm->stream); // nothing in flight uses what goes
    lf_cuda_optimizer_free(rt);
    lf_cuda_graphs_free(rt->graphs);
    for (int i = 0; dm->frozen != NULL && dm->frozen_owned != NULL && i < rt->desc.n_frozen; i++)
        if (dm->frozen_owned[i]) (void)cudaFree(dm->frozen[i]);
    void *device[] = {dm->params, dm->grads,   dm->batch.tokens, dm->work,         dm->blas_workspace,
                      dm->logits, dm->dlogits, dm->loss,         dm->class_weights};
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++)
        (void)cudaFree(device[i]);
    (void)cudaFree(dm->step_seed);
    lf_cuda_pinned_free(rt->host_params);
    lf_cuda_pinned_free(rt->host_grads);
    lf_cuda_pinned_free(rt->host_batch);
    lf_cuda_pinned_free(rt->host_step_seed);
    lf_cuda_pinned_free(rt->host_dlogits);
    if (dm->stream != NULL) (void)cudaStreamDestroy(dm->stream);
    (void)cudaGetLastError();
    free(dm->frozen);
    free(dm->frozen_dtype);
    free(dm->frozen_owned);
    free(dm->param_offset);
    free(rt);
}

size_t lf_cuda_model_device_bytes(void *cuda_model) {
    if (cuda_model == NULL) return 0;
    const runtime *rt = (const runtime *)cuda_model;
    const lf_cuda_model *dm = &rt->dm;
    size_t bytes = 0;
    for (int i = 0; i < rt->desc.n_frozen; i++)
        if (dm->frozen[i] != NULL)
            bytes += (size_t)dm->host->frozen[i].numel * lf_cuda_dtype_size(dm->frozen_dtype[i]);
    bytes += (rt->optimizer != NULL ? 4 : 2) * rt->param_floats * sizeof(float); // params, grads (m, v)
    bytes += sizeof(float);                                                      // the loss after the grads
    if (dm->batch.tokens != NULL) bytes += batch_ints(dm->batch.cap_T, dm->batch.cap_B) * sizeof(int32_t);
    bytes += dm->work_bytes + dm->blas_workspace_bytes;
    size_t nl = (size_t)dm->host->cfg.num_labels;
    bytes += 2 * (size_t)dm->cap_logits * nl * sizeof(float) + sizeof(float) + nl * sizeof(float);
    bytes += sizeof(uint64_t); // the step seed
    return bytes;
}

// ---- a step: buffers grown for the batch, batch and params uploaded ----

static int reserve_batch(runtime *rt, const lf_batch *b) {
    lf_cuda_model *dm = &rt->dm;
    if (dm->batch.tokens != NULL && b->T <= dm->batch.cap_T && b->B <= dm->batch.cap_B) return 0;
    int cap_T = b->T > dm->batch.cap_T ? b->T : dm->batch.cap_T;
    int cap_B = b->B > dm->batch.cap_B ? b->B : dm->batch.cap_B;
    (void)cudaFree(dm->batch.tokens); // the previous call synchronized: nothing reads them now
    lf_cuda_pinned_free(rt->host_batch);
    dm->batch = {};
    rt->host_batch = NULL;
    size_t bytes = batch_ints(cap_T, cap_B) * sizeof(int32_t);
    int32_t *base = NULL;
    int rc = lf_cuda_device_alloc((void **)&base, bytes, "the batch");
    if (rc == 0) rc = lf_cuda_pinned_alloc((void **)&rt->host_batch, bytes, "the batch upload");
    if (rc != 0) {
        (void)cudaFree(base);
        lf_cuda_pinned_free(rt->host_batch);
        rt->host_batch = NULL;
        return rc;
    }
    dm->batch.tokens = base;
    dm->batch.positions = base + cap_T;
    dm->batch.token_types = base + 2 * (size_t)cap_T;
    dm->batch.offsets = base + 3 * (size_t)cap_T;
    dm->batch.pool_index = dm->batch.offsets + cap_B + 1;
    dm->batch.labels = dm->batch.pool_index + cap_B;
    dm->batch.cap_T = cap_T;
    dm->batch.cap_B = cap_B;
    return 0;
}

static int reserve_logits(lf_cuda_model *dm, int B) {
    if (dm->logits != NULL && B <= dm->cap_logits) return 0;
    (void)cudaFree(dm->logits);
    (void)cudaFree(dm->dlogits);
    dm->logits = dm->dlogits = NULL;
    dm->cap_logits = 0;
    size_t bytes = (size_t)B * dm->host->cfg.num_labels * sizeof(float);
    int rc = lf_cuda_device_alloc((void **)&dm->logits, bytes, "the logits");
    if (rc == 0) rc = lf_cuda_device_alloc((void **)&dm->dlogits, bytes, "the logits' gradient");
    if (rc == 0) dm->cap_logits = B;
    return rc;
}

static int reserve_work(lf_cuda_model *dm, const lf_batch *b) {
    size_t need = dm->arch->workspace_bytes(dm, b);
    if (need <= dm->work_bytes) return 0;
    (void)cudaFree(dm->work);
    dm->work = NULL;
    dm->work_bytes = 0;
    char what[160];
    snprintf(what, sizeof what, "the activations of a batch of %d tokens", b->T);
    int rc = lf_cuda_device_alloc(&dm->work, need, what);
    if (rc == 0) dm->work_bytes = need;
    return rc;
}

// the batch arrays, logits and activations for batches of b's sizes; a graph uses these buffers, so
// when one moves every graph is dropped
static int reserve_buffers(runtime *rt, const lf_batch *b) {
    lf_cuda_model *dm = &rt->dm;
    const void *before[] = {dm->batch.tokens, dm->logits, dm->work};
    int rc = reserve_batch(rt, b);
    if (rc == 0) rc = reserve_logits(dm, b->B);
    if (rc == 0) rc = reserve_work(dm, b);
    if (before[0] != dm->batch.tokens || before[1] != dm->logits || before[2] != dm->work)
        lf_cuda_graphs_clear(rt->graphs);
    return rc;
}

int lf_cuda_model_reserve(void *cuda_model, int max_batch, int max_len) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    if (max_batch < 1 || max_len < 1 || (int64_t)max_batch * max_len > INT32_MAX)
        return lf_cuda_set_error((int)cudaErrorInvalidValue,
                                 "cannot plan for batches of %d sequences of %d tokens", max_batch, max_len);
    lf_batch most = {};
    most.T = max_batch * max_len;
    most.B = max_batch;
    most.max_len = max_len;
    if (rt->graphs != NULL) most = lf_cuda_graph_batch_bound(max_batch, max_len);
    return reserve_buffers(rt, &most);
}

// the host batch arrays into the pinned staging (the device layout), with the ghost sequence when
// the device runs the batch padded (run: its sizes), then one copy up
static int upload_batch(runtime *rt, const lf_batch *b, const lf_batch *run) {
    lf_cuda_model *dm = &rt->dm;
    int32_t *h = rt->host_batch;
    size_t cap_T = (size_t)dm->batch.cap_T, cap_B = (size_t)dm->batch.cap_B, T = (size_t)b->T,
           B = (size_t)b->B;
    int32_t *tokens = h, *positions = h + cap_T, *token_types = h + 2 * cap_T, *offsets = h + 3 * cap_T,
            *pool_index = offsets + cap_B + 1, *labels = pool_index + cap_B;
    memcpy(tokens, b->tokens, T * sizeof(int32_t));
    memcpy(positions, b->positions, T * sizeof(int32_t));
    memcpy(token_types, b->token_types, T * sizeof(int32_t));
    memcpy(offsets, b->offsets, (B + 1) * sizeof(int32_t));
    memcpy(pool_index, b->pool_index, B * sizeof(int32_t));
    memcpy(labels, b->labels, B * sizeof(int32_t));
    if (run->B > b->B)
        lf_cuda_graph_fill_ghost(b, run, tokens, positions, token_types, offsets, pool_index, labels);
    return lf_cuda_checked(cudaMemcpyAsync(dm->batch.tokens, h,
                                           batch_ints((int)cap_T, (int)cap_B) * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, dm->stream),
                           "uploading the batch");
}

int lf_cuda_upload_params(runtime *rt, const lf_model_desc *m) {
    if (rt->param_floats == 0) return 0;
    for (int i = 0; i < m->n_params; i++)
        memcpy(rt->host_params + rt->dm.param_offset[i], m->params[i].data,
               (size_t)m->params[i].numel * sizeof(float));
    return lf_cuda_checked(cudaMemcpyAsync(rt->dm.params, rt->host_params, rt->param_floats * sizeof(float),
                                           cudaMemcpyHostToDevice, rt->dm.stream),
                           "uploading the trainable params");
}

int lf_cuda_download_params(runtime *rt, const lf_model_desc *m) {
    if (rt->param_floats == 0) return 0;
    int rc = lf_cuda_checked(cudaMemcpyAsync(rt->host_params, rt->dm.params, rt->param_floats * sizeof(float),
                                             cudaMemcpyDeviceToHost, rt->dm.stream),
                             "downloading the trainable params");
    int sync = lf_cuda_checked(cudaStreamSynchronize(rt->dm.stream), "downloading the trainable params");
    if (rc != 0 || sync != 0) return rc != 0 ? rc : sync;
    for (int i = 0; i < m->n_params; i++)
        memcpy(m->params[i].data, rt->host_params + rt->dm.param_offset[i],
               (size_t)m->params[i].numel * sizeof(float));
    return 0;
}

int lf_cuda_describe(runtime *rt, const lf_model_desc *m) {
    if (m == NULL || m->frozen != rt->desc.frozen)
        return lf_cuda_set_error((int)cudaErrorInvalidValue, "the device copy belongs to another model");
    if (m->n_frozen != rt->desc.n_frozen || m->n_params != rt->desc.n_params)
        return lf_cuda_set_error((int)cudaErrorInvalidValue,
                                 "the device copy is stale: the model's tables changed since it was made "
                                 "(move the model to CUDA again)");
    rt->desc = *m;
    return 0;
}

static int check_current(runtime *rt, const lf_model_desc *m) {
    int rc = lf_cuda_describe(rt, m);
    if (rc != 0) return rc;
    const lf_batch *b = &m->batch;
    if (b->B < 1 || b->T < 0 || b->tokens == NULL)
        return lf_cuda_set_error((int)cudaErrorInvalidValue, "no batch is loaded");
    return 0;
}

// m->step_seed into dm.step_seed, from pinned memory (a copy that can precede a graph's replay)
static int upload_step_seed(runtime *rt, const lf_model_desc *m) {
    *rt->host_step_seed = m->step_seed;
    return lf_cuda_checked(cudaMemcpyAsync(rt->dm.step_seed, rt->host_step_seed, sizeof(uint64_t),
                                           cudaMemcpyHostToDevice, rt->dm.stream),
                           "uploading the step seed");
}

// checks, buffers and uploads for the model's batch; *run: the sizes the device runs it as (padded
// for a graph, else the batch's own)
static int prepare_step(runtime *rt, const lf_model_desc *m, lf_batch *run) {
    const lf_batch *b = &m->batch;
    int rc = check_current(rt, m);
    if (rc != 0) return rc;
    *run = rt->graphs != NULL && b->T > 0 ? lf_cuda_graph_batch(b) : *b;
    rc = reserve_buffers(rt, run);
    if (rc == 0) rc = upload_batch(rt, b, run);
    if (rc == 0) rc = upload_step_seed(rt, m);
    if (rc == 0 && rt->optimizer == NULL) rc = lf_cuda_upload_params(rt, m); // else the device's are newer
    return rc;
}

typedef int (*arch_pass)(lf_cuda_model *dm, const lf_batch *b);

// runs an architecture's pass; a failure names the architecture and the pass
static int run_pass(runtime *rt, arch_pass pass, const lf_batch *b, const char *what) {
    last_error_message[0] = '\0';
    int rc = pass(&rt->dm, b);
    if (rc == 0) return 0;
    (void)cudaGetLastError();
    return lf_cuda_set_error(rc, "the CUDA %s %s: %s", rt->dm.arch->name, what,
                             last_error_message[0] ? last_error_message
                                                   : cudaGetErrorString((cudaError_t)rc));
}

// waits for the stream (always: the pinned staging is reused by the next call) and reports
// what the device ran into, unless an earlier step failed already
static int finish(runtime *rt, int rc, const char *what) {
    cudaError_t err = cudaStreamSynchronize(rt->dm.stream);
    if (rc == 0 && err != cudaSuccess) rc = lf_cuda_checked(err, what);
    return rc;
}

// the device work of a step on the batch as the device runs it: forward, and for a training step
// the cross-entropy of the batch's own sequences (run may add the ghost) and backward
typedef struct {
    const lf_batch *run;
    int B;                // the batch's own sequences
    const float *weights; // device class weights or NULL
    int backward;
} step_work;

// the factor the backward's loss gradient is seeded with: fp16's dynamic loss scale, else 1
static float loss_scale(const runtime *rt) { return rt->optimizer ? rt->optimizer->loss_scale : 1.0f; }

static int run_step(runtime *rt, void *ctx) {
    const step_work *w = (const step_work *)ctx;
    lf_cuda_model *dm = &rt->dm;
    int NL = dm->host->cfg.num_labels;
    int rc = run_pass(rt, dm->arch->forward, w->run, "forward");
    if (rc != 0 || !w->backward) return rc;
    if (w->run->B > w->B) // the ghost's logits are outside the loss: their gradient is zero
        rc = lf_cuda_checked(cudaMemsetAsync(dm->dlogits + (size_t)w->B * NL, 0,
                                             (size_t)(w->run->B - w->B) * NL * sizeof(float), dm->stream),
                             "zeroing the ghost's logits gradient");
    if (rc == 0)
        rc = lf_cuda_checked(crossentropy_forward_backward_cuda(dm->loss, dm->dlogits, dm->logits,
                                                                dm->batch.labels, w->weights, w->B, NL,
                                                                loss_scale(rt), dm->stream),
                             "the cross-entropy");
    if (rc == 0) rc = run_pass(rt, dm->arch->backward, w->run, "backward");
    return rc;
}

// run_step through its graph, or directly when graphs are off
static int launch_step(runtime *rt, const step_work *w) {
    if (rt->graphs == NULL) return run_step(rt, (void *)w);
    const lf_model_desc *m = rt->dm.host;
    lf_cuda_graph_shape shape = {};
    shape.backward = w->backward;
    shape.T = w->run->T, shape.B = w->run->B, shape.max_len = w->run->max_len;
    shape.training = m->training, shape.checkpointing = m->gradient_checkpointing;
    shape.weighted = w->weights != NULL;
    shape.loss_scale = w->backward ? loss_scale(rt) : 1.0f;
    shape.lora_dropout = m->lora.dropout;
    shape.tf32 = matmul_tf32();
    return lf_cuda_graph_run(rt, &shape, run_step, (void *)w);
}

int lf_cuda_model_forward(void *cuda_model, const lf_model_desc *m, float *logits) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    lf_cuda_model *dm = &rt->dm;
    const lf_batch *b = &m->batch;
    lf_batch run;
    int rc = prepare_step(rt, m, &run);
    step_work w = {&run, b->B, NULL, 0};
    if (rc == 0) rc = launch_step(rt, &w);
    if (rc == 0)
        rc = lf_cuda_checked(cudaMemcpyAsync(logits, dm->logits,
                                             (size_t)b->B * m->cfg.num_labels * sizeof(float),
                                             cudaMemcpyDeviceToHost, dm->stream),
                             "downloading the logits");
    return finish(rt, rc, "running the forward on the device");
}

static void add_grads(const runtime *rt, const lf_model_desc *m) {
    for (int i = 0; i < m->n_params; i++) {
        const float *g = rt->host_grads + rt->dm.param_offset[i];
        float *dst = m->params[i].grad;
        for (int64_t j = 0; j < m->params[i].numel; j++)
            dst[j] += g[j];
    }
}

int lf_cuda_model_forward_backward(void *cuda_model, const lf_model_desc *m, const float *class_weights,
                                   float *logits, float *loss) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    lf_cuda_model *dm = &rt->dm;
    const lf_batch *b = &m->batch;
    int NL = m->cfg.num_labels;
    lf_batch run;
    int rc = prepare_step(rt, m, &run);
    const float *weights = NULL;
    if (rc == 0 && class_weights != NULL) {
        rc = lf_cuda_checked(cudaMemcpyAsync(dm->class_weights, class_weights, (size_t)NL * sizeof(float),
                                             cudaMemcpyHostToDevice, dm->stream),
                             "uploading the class weights");
        weights = dm->class_weights;
    }
    // with AdamW on the device the gradients accumulate there (zeroed by lf_cuda_model_zero_grads)
    const int grads_down = rt->optimizer == NULL && rt->param_floats > 0;
    if (rc == 0 && grads_down)
        rc = lf_cuda_checked(cudaMemsetAsync(dm->grads, 0, rt->param_floats * sizeof(float), dm->stream),
                             "zeroing the gradients");
    step_work w = {&run, b->B, weights, 1};
    if (rc == 0) rc = launch_step(rt, &w);
    float loss_value = 0.0f;
    if (rc == 0)
        rc = lf_cuda_checked(cudaMemcpyAsync(logits, dm->logits, (size_t)b->B * NL * sizeof(float),
                                             cudaMemcpyDeviceToHost, dm->stream),
                             "downloading the logits");
    if (rc == 0)
        rc = lf_cuda_checked(
            cudaMemcpyAsync(&loss_value, dm->loss, sizeof(float), cudaMemcpyDeviceToHost, dm->stream),
            "downloading the loss");
    if (rc == 0 && grads_down)
        rc = lf_cuda_checked(cudaMemcpyAsync(rt->host_grads, dm->grads, rt->param_floats * sizeof(float),
                                             cudaMemcpyDeviceToHost, dm->stream),
                             "downloading the gradients");
    rc = finish(rt, rc, "running the training step on the device");
    if (rc != 0) return rc;
    *loss = loss_value;
    if (grads_down) add_grads(rt, m);
    return 0;
}

// pinned room for n floats of a loss gradient computed on the host (grown, never shrunk)
static int reserve_host_dlogits(runtime *rt, size_t n) {
    if (n <= rt->cap_host_dlogits) return 0;
    lf_cuda_pinned_free(rt->host_dlogits);
    rt->host_dlogits = NULL;
    rt->cap_host_dlogits = 0;
    int rc =
        lf_cuda_pinned_alloc((void **)&rt->host_dlogits, n * sizeof(float), "the loss gradient's upload");
    if (rc == 0) rt->cap_host_dlogits = n;
    return rc;
}

int lf_cuda_model_backward(void *cuda_model, const lf_model_desc *m, const float *dlogits) {
    runtime *rt = (runtime *)cuda_model;
    int entered = lf_cuda_enter(rt);
    if (entered != 0) return entered;
    lf_cuda_model *dm = &rt->dm;
    const lf_batch *b = &m->batch;
    const int NL = m->cfg.num_labels;
    int rc = check_current(rt, m);
    // the batch as the forward ran it: with graphs, the ghost sequence appended (its gradient zero)
    lf_batch run = rt->graphs != NULL && b->T > 0 ? lf_cuda_graph_batch(b) : *b;
    const size_t given = (size_t)b->B * NL, rows = (size_t)run.B * NL;
    if (rc == 0) rc = reserve_host_dlogits(rt, rows);
    if (rc == 0) {
        const float scale = loss_scale(rt); // fp16: the loss scale seeds the backward, as the cross-entropy's
        for (size_t i = 0; i < rows; i++)
            rt->host_dlogits[i] = i < given ? dlogits[i] * scale : 0.0f;
        rc = lf_cuda_checked(cudaMemcpyAsync(dm->dlogits, rt->host_dlogits, rows * sizeof(float),
                                             cudaMemcpyHostToDevice, dm->stream),
                             "uploading the loss gradient");
    }
    const int grads_down = rt->optimizer == NULL && rt->param_floats > 0;
    if (rc == 0 && grads_down)
        rc = lf_cuda_checked(cudaMemsetAsync(dm->grads, 0, rt->param_floats * sizeof(float), dm->stream),
                             "zeroing the gradients");
    if (rc == 0) rc = run_pass(rt, dm->arch->backward, &run, "backward");
    if (rc == 0 && grads_down)
        rc = lf_cuda_checked(cudaMemcpyAsync(rt->host_grads, dm->grads, rt->param_floats * sizeof(float),
                                             cudaMemcpyDeviceToHost, dm->stream),
                             "downloading the gradients");
    rc = finish(rt, rc, "running the backward on the device");
    if (rc == 0 && grads_down) add_grads(rt, m);
    return rc;
}

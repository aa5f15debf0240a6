// CUDA graphs of the model's steps (see device_runtime.cuh). A training step of roberta-large is
// ~380 kernels, ~30 memsets and ~290 cuBLASLt calls (bench/graph_nodes.py); for a batch of tweets each does a
// few microseconds of work, so launching them one by one bounds the step. Captured once per shape into a
// graph, the step is one cudaGraphLaunch. A shape runs directly the first time it comes (so every kernel and
// cuBLASLt algorithm it needs is loaded outside a capture), is captured the second time.
//
// What makes a replay correct:
// - every pointer a step uses is fixed while its graph lives: the runtime clears the cache whenever
//   it reallocates the batch, the logits or the activations (lf_cuda_model_reserve plans them for
//   the longest batch of a run, so in a Trainer run that happens once);
// - what changes from step to step is data in device memory the runtime writes before the launch:
//   the batch, the params (without AdamW on the device), the dropout streams' step seed;
// - the rest is in the graph's shape: the padded sizes, the mode, the loss scale, the dropout
//   probabilities. Another value is another graph.
//
// Padding: a batch's sizes vary from step to step (tweets), so a graph runs the batch padded to a
// bucket: when T is not on one already, one ghost sequence appended after the last token, of the
// tokens that bring T up to the bucket; max_len rounded up to the attention's tile of 32 (a graph
// launches the attention blocks of that many rows, so no more of them than the batch needs). The
// ghost is a sequence like the others for every layer (so its values are finite), and is
// outside the loss: its logits row is not returned and its row of the logits' gradient is zero,
// so its tokens' gradients are exactly zero. The real tokens keep their indices and so their
// dropout masks.
#include "device_runtime.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int GRAPH_CACHE_SIZE = 32; // shapes kept; the least recently used goes first

typedef struct {
    lf_cuda_graph_shape shape;
    cudaGraphExec_t exec; // NULL: the shape was run once, directly, and is captured when it comes again
    uint64_t last_use;
} graph_entry;

struct lf_cuda_graphs {
    graph_entry entries[GRAPH_CACHE_SIZE];
    int count;
    uint64_t uses;
};

int lf_cuda_graphs_wanted(void) {
    const char *v = getenv("LORAFAST_CUDA_GRAPHS");
    return v == NULL || strcmp(v, "0") != 0;
}

int lf_cuda_graphs_create(lf_cuda_graphs **out) {
    *out = (lf_cuda_graphs *)calloc(1, sizeof **out);
    return *out != NULL ? 0 : lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory");
}

void lf_cuda_graphs_clear(lf_cuda_graphs *g) {
    if (g == NULL) return;
    for (int i = 0; i < g->count; i++)
        if (g->entries[i].exec != NULL) (void)cudaGraphExecDestroy(g->entries[i].exec);
    g->count = 0;
}

void lf_cuda_graphs_free(lf_cuda_graphs *g) {
    lf_cuda_graphs_clear(g);
    free(g);
}

// ---- the padded batch ----

// the granularity of bucket(n): 64 up to 1024 tokens, above that n/16 rounded up to a power of two
static int64_t bucket_step(int64_t n) {
    int64_t step = 64;
    while (step * 16 < n)
        step *= 2;
    return step;
}

// n rounded up to a multiple of bucket_step(n): padding adds at most 1/16 (or 63 tokens), and a run
// sees a few dozen shapes
static int bucket(int64_t n) {
    int64_t step = bucket_step(n), up = (n + step - 1) / step * step;
    return up > INT32_MAX ? INT32_MAX : (int)up;
}

// a sequence length n rounded up to a multiple of 32 (the attention kernels' tile), above 1024 as bucket(n)
static int bucket_len(int64_t n) { return n <= 1024 ? (int)((n + 31) / 32 * 32) : bucket(n); }

lf_batch lf_cuda_graph_batch(const lf_batch *b) {
    lf_batch p = {};
    p.T = bucket(b->T);
    p.B = p.T > b->T ? b->B + 1 : b->B; // the ghost only where tokens are missing
    int ghost = p.T - b->T;
    p.max_len = bucket_len(b->max_len > ghost ? b->max_len : ghost);
    return p;
}

lf_batch lf_cuda_graph_batch_bound(int max_batch, int max_len) {
    lf_batch p = {};
    p.T = bucket((int64_t)max_batch * max_len);
    p.B = max_batch + 1;
    // a smaller batch's ghost may be longer than max_len, but shorter than a bucket step
    int64_t ghost = bucket_step(p.T);
    p.max_len = bucket_len(max_len > ghost ? max_len : ghost);
    return p;
}

void lf_cuda_graph_fill_ghost(const lf_batch *b, const lf_batch *padded, int32_t *tokens, int32_t *positions,
                              int32_t *token_types, int32_t *offsets, int32_t *pool_index, int32_t *labels) {
    for (int t = b->T; t < padded->T; t++) {
        tokens[t] = b->tokens[0];
        positions[t] = b->positions[0];
        token_types[t] = b->token_types[0];
    }
    offsets[padded->B] = padded->T;
    pool_index[b->B] = b->T;
    labels[b->B] = 0;
}

// ---- the cache ----

static int same_shape(const lf_cuda_graph_shape *a, const lf_cuda_graph_shape *b) {
    return a->backward == b->backward && a->T == b->T && a->B == b->B && a->max_len == b->max_len &&
           a->training == b->training && a->checkpointing == b->checkpointing && a->weighted == b->weighted &&
           a->loss_scale == b->loss_scale && a->lora_dropout == b->lora_dropout && a->tf32 == b->tf32;
}

static graph_entry *find(lf_cuda_graphs *g, const lf_cuda_graph_shape *shape) {
    for (int i = 0; i < g->count; i++)
        if (same_shape(&g->entries[i].shape, shape)) return &g->entries[i];
    return NULL;
}

// a new entry for shape holding exec; a full cache first drops its least recently used graph
static graph_entry *insert(lf_cuda_graphs *g, const lf_cuda_graph_shape *shape, cudaGraphExec_t exec) {
    graph_entry *e;
    if (g->count < GRAPH_CACHE_SIZE) {
        e = &g->entries[g->count++];
    } else {
        e = &g->entries[0];
        for (int i = 1; i < g->count; i++)
            if (g->entries[i].last_use < e->last_use) e = &g->entries[i];
        if (e->exec != NULL) (void)cudaGraphExecDestroy(e->exec);
    }
    e->shape = *shape;
    e->exec = exec;
    return e;
}

// ---- capture and replay ----

// cudaErrorStreamCapture*: what CUDA says of work it cannot capture
static int is_capture_error(int code) {
    return code >= (int)cudaErrorStreamCaptureUnsupported && code <= (int)cudaErrorStreamCaptureWrongThread;
}

// graphs off for this model from now on; says why once on stderr (the steps stay correct, only slower)
static void give_up(runtime *rt, int code, const char *what) {
    fprintf(stderr, "lorafast: running the CUDA steps without graphs (%s: %s)\n", what,
            cudaGetErrorString((cudaError_t)code));
    (void)cudaGetLastError();
    lf_cuda_graphs_free(rt->graphs);
    rt->graphs = NULL;
}

// Captures body on the model's stream into *exec. Returns body's error (no graph), or 0: *exec is the
// instantiated graph, or NULL when CUDA could not capture or instantiate it (graphs are then off).
static int capture(runtime *rt, lf_cuda_step_body body, void *ctx, cudaGraphExec_t *exec) {
    cudaStream_t stream = rt->dm.stream;
    *exec = NULL;
    int err = (int)cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (err != 0) {
        give_up(rt, err, "beginning a stream capture");
        return 0;
    }
    int rc = body(rt, ctx);
    cudaGraph_t graph = NULL;
    int end = (int)cudaStreamEndCapture(stream, &graph);
    if (rc == 0 && end == 0) {
        end = (int)cudaGraphInstantiate(exec, graph, 0);
        if (end != 0) *exec = NULL;
    }
    if (graph != NULL) (void)cudaGraphDestroy(graph);
    if (rc != 0 && !is_capture_error(rc)) {
        (void)cudaGetLastError();
        return rc; // the step itself failed: as it would have without a graph
    }
    if (rc != 0 || end != 0) give_up(rt, rc != 0 ? rc : end, "capturing the step");
    return 0;
}

int lf_cuda_graph_run(runtime *rt, const lf_cuda_graph_shape *shape, lf_cuda_step_body body, void *ctx) {
    lf_cuda_graphs *g = rt->graphs;
    graph_entry *e = find(g, shape);
    const int first = e == NULL;
    if (first) e = insert(g, shape, NULL);
    e->last_use = ++g->uses;
    // first seen: run directly, so that every kernel and cuBLASLt algorithm it uses is loaded before
    // a capture (lazy module loading)
    if (first) return body(rt, ctx);
    if (e->exec == NULL) {
        int rc = capture(rt, body, ctx, &e->exec);
        if (rc != 0) return rc;
        if (rt->graphs == NULL) return body(rt, ctx); // CUDA refused: graphs off, this step directly
    }
    return lf_cuda_checked(cudaGraphLaunch(e->exec, rt->dm.stream), "launching the step's CUDA graph");
}

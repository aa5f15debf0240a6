// Data parallel on the device (TrainingArguments(ddp_backend="nccl")): NCCL's C API, opened with dlopen
// from the nvidia-nccl-cu13 wheel (lorafast/distributed.py finds libnccl.so.2; LORAFAST_NCCL_LIBRARY names
// another, the tests' fake), reduces the flat device gradient buffer of a training run once per update.
//
// The communicator: rank 0 makes the unique id (nccl_unique_id), the ranks exchange it through the
// torch.distributed process group (gloo) and each makes its communicator on its model's device
// (nccl_comm_create). An update's reduction (optimizer_all_reduce), on the model's stream, outside the
// CUDA graphs (they hold a micro-batch's forward and backward; the reduction runs once per update, between
// the last micro-batch and clipping):
//   the update's loss goes up into the slot after the gradients (dm.grads[param_floats]),
//   gradients and loss divided by the world size (DDP's pre-division, as the gloo path's div_),
//   one ncclAllReduce (sum, f32, in place) over param_floats + 1 floats (the alignment gaps are zeros),
//   the loss comes down; the host waits, polling the stream and the communicator's asynchronous error,
//   at most timeout seconds (ddp_timeout), then aborts the communicator, which is unusable after a failure.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "device_runtime.cuh"

// The part of NCCL's ABI used here, as nccl.h (2.x) defines it.
enum { NCCL_ID_BYTES = 128 };
typedef struct {
    char internal[NCCL_ID_BYTES];
} nccl_id;
typedef struct nccl_comm *nccl_comm_t;
enum { NCCL_SUCCESS = 0, NCCL_IN_PROGRESS = 7, NCCL_FLOAT32 = 7, NCCL_SUM = 0 };

static struct {
    void *handle;
    int (*get_version)(int *version);
    int (*get_unique_id)(nccl_id *id);
    int (*comm_init_rank)(nccl_comm_t *comm, int nranks, nccl_id id, int rank);
    int (*all_reduce)(const void *send, void *recv, size_t count, int datatype, int op, nccl_comm_t comm,
                      cudaStream_t stream);
    int (*comm_get_async_error)(nccl_comm_t comm, int *error);
    int (*comm_destroy)(nccl_comm_t comm);
    int (*comm_abort)(nccl_comm_t comm);
    const char *(*get_error_string)(int result);
    const char *(*get_last_error)(nccl_comm_t comm);
} nccl;

struct lf_nccl_comm {
    nccl_comm_t comm; // NULL once aborted
    int nranks, rank, device;
};

enum { LF_NCCL_FAILED = 999 }; // cudaErrorUnknown: the message says what NCCL said

// NCCL's words for result: its error string and its last error message
static int nccl_failure(int result, nccl_comm_t comm, const char *what) {
    const char *last = nccl.get_last_error ? nccl.get_last_error(comm) : NULL;
    return lf_cuda_set_error(LF_NCCL_FAILED, "%s: NCCL error %d (%s)%s%s", what, result,
                             nccl.get_error_string ? nccl.get_error_string(result) : "?",
                             last && last[0] ? ": " : "", last && last[0] ? last : "");
}

int lf_cuda_nccl_open(const char *path) {
    lf_cuda_begin_call();
    if (nccl.handle != NULL) return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) return lf_cuda_set_error(LF_NCCL_FAILED, "cannot open NCCL (%s): %s", path, dlerror());
    struct {
        const char *name;
        void **slot;
    } symbols[] = {
        {"ncclGetVersion", (void **)&nccl.get_version},
        {"ncclGetUniqueId", (void **)&nccl.get_unique_id},
        {"ncclCommInitRank", (void **)&nccl.comm_init_rank},
        {"ncclAllReduce", (void **)&nccl.all_reduce},
        {"ncclCommGetAsyncError", (void **)&nccl.comm_get_async_error},
        {"ncclCommDestroy", (void **)&nccl.comm_destroy},
        {"ncclCommAbort", (void **)&nccl.comm_abort},
        {"ncclGetErrorString", (void **)&nccl.get_error_string},
        {"ncclGetLastError", (void **)&nccl.get_last_error},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++)
        if ((*symbols[i].slot = dlsym(h, symbols[i].name)) == NULL) {
            dlclose(h);
            memset(&nccl, 0, sizeof nccl);
            return lf_cuda_set_error(LF_NCCL_FAILED, "%s has no %s: not an NCCL 2 library", path,
                                     symbols[i].name);
        }
    nccl.handle = h;
    return 0;
}

static int check_open(void) {
    if (nccl.handle != NULL) return 0;
    return lf_cuda_set_error(LF_NCCL_FAILED, "NCCL is not opened (nccl_open)");
}

int lf_cuda_nccl_version(void) {
    int version = 0;
    return nccl.handle != NULL && nccl.get_version(&version) == NCCL_SUCCESS ? version : 0;
}

int lf_cuda_nccl_unique_id(void *id) {
    lf_cuda_begin_call();
    int rc = check_open();
    if (rc != 0) return rc;
    int result = nccl.get_unique_id((nccl_id *)id);
    return result == NCCL_SUCCESS ? 0 : nccl_failure(result, NULL, "making the NCCL unique id");
}

int lf_cuda_nccl_comm_create(const void *id, int nranks, int rank, int device, void **out) {
    lf_cuda_begin_call();
    *out = NULL;
    int rc = check_open();
    if (rc != 0) return rc;
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return lf_cuda_set_error((int)cudaErrorInvalidValue, "NCCL rank %d of %d is not a rank", rank,
                                 nranks);
    rc = lf_cuda_checked(cudaSetDevice(device), "selecting the CUDA device of the NCCL communicator");
    if (rc != 0) return rc;
    lf_nccl_comm *c = (lf_nccl_comm *)calloc(1, sizeof *c);
    if (c == NULL) return lf_cuda_set_error((int)cudaErrorMemoryAllocation, "out of host memory");
    nccl_id unique;
    memcpy(&unique, id, sizeof unique);
    int result = nccl.comm_init_rank(&c->comm, nranks, unique, rank);
    if (result != NCCL_SUCCESS) {
        free(c);
        char what[96];
        snprintf(what, sizeof what, "making the NCCL communicator of rank %d of %d on cuda:%d", rank, nranks,
                 device);
        return nccl_failure(result, NULL, what);
    }
    c->nranks = nranks, c->rank = rank, c->device = device;
    *out = c;
    return 0;
}

void lf_cuda_nccl_comm_free(void *comm) {
    lf_nccl_comm *c = (lf_nccl_comm *)comm;
    if (c == NULL) return;
    if (c->comm != NULL) {
        (void)cudaSetDevice(c->device);
        (void)nccl.comm_destroy(c->comm);
    }
    free(c);
}

static void abort_comm(lf_nccl_comm *c) {
    if (c->comm == NULL) return;
    (void)nccl.comm_abort(c->comm);
    c->comm = NULL;
}

// x[i] /= divisor for i < n: DDP divides each rank's gradients by the world size before summing
__global__ static void divide_kernel(float *x, size_t n, float divisor) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] /= divisor;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// waits for the stream's all-reduce: 0, or an error once NCCL reports one or timeout seconds passed
static int wait_all_reduce(runtime *rt, lf_nccl_comm *c, double timeout, const char *what) {
    const double start = seconds_now();
    for (;;) {
        cudaError_t err = cudaStreamQuery(rt->dm.stream);
        if (err == cudaSuccess) return 0;
        if (err != cudaErrorNotReady) return lf_cuda_checked(err, what);
        int async = NCCL_SUCCESS;
        int result = nccl.comm_get_async_error(c->comm, &async);
        if (result != NCCL_SUCCESS || (async != NCCL_SUCCESS && async != NCCL_IN_PROGRESS)) {
            int rc = nccl_failure(result != NCCL_SUCCESS ? result : async, c->comm, what);
            abort_comm(c);
            return rc;
        }
        if (seconds_now() - start > timeout) {
            abort_comm(c);
            return lf_cuda_set_error(LF_NCCL_FAILED, "%s: not done within %g s (NCCL communicator aborted)",
                                     what, timeout);
        }
        usleep(100);
    }
}

int lf_cuda_optimizer_all_reduce(void *cuda_model, void *comm, float *loss, double timeout) {
    runtime *rt = (runtime *)cuda_model;
    int rc = lf_cuda_enter(rt);
    lf_nccl_comm *c = (lf_nccl_comm *)comm;
    if (rc == 0 && rt->optimizer == NULL)
        rc = lf_cuda_set_error((int)cudaErrorInvalidValue, "no training run on the device for this model");
    if (rc == 0 && (c == NULL || c->comm == NULL))
        rc = lf_cuda_set_error(LF_NCCL_FAILED, "the NCCL communicator failed before (it was aborted)");
    if (rc == 0 && rt->param_floats == 0)
        rc = lf_cuda_set_error((int)cudaErrorInvalidValue, "the model has no trainable params to all-reduce");
    if (rc == 0 && c->device != rt->device)
        rc = lf_cuda_set_error((int)cudaErrorInvalidValue,
                               "the NCCL communicator is on cuda:%d, the model on cuda:%d", c->device,
                               rt->device);
    if (rc != 0) return rc;
    const size_t n = rt->param_floats + 1; // the gradients, then the loss
    float *flat = rt->dm.grads;
    cudaStream_t stream = rt->dm.stream;
    char what[128];
    snprintf(what, sizeof what, "the NCCL all-reduce of %zu floats (rank %d of %d)", n, c->rank, c->nranks);
    rt->host_grads[0] = *loss; // pinned, unused while a run keeps its gradients on the device
    rc = lf_cuda_checked(cudaMemcpyAsync(flat + rt->param_floats, rt->host_grads, sizeof(float),
                                         cudaMemcpyHostToDevice, stream),
                         "uploading the loss for the all-reduce");
    if (rc == 0) {
        const unsigned threads = 256;
        divide_kernel<<<(unsigned)((n + threads - 1) / threads), threads, 0, stream>>>(flat, n,
                                                                                       (float)c->nranks);
        rc = lf_cuda_checked(cudaGetLastError(), "dividing the gradients by the world size");
    }
    if (rc == 0) {
        int result = nccl.all_reduce(flat, flat, n, NCCL_FLOAT32, NCCL_SUM, c->comm, stream);
        if (result != NCCL_SUCCESS) {
            rc = nccl_failure(result, c->comm, what);
            abort_comm(c);
        }
    }
    if (rc == 0)
        rc = lf_cuda_checked(cudaMemcpyAsync(rt->host_grads, flat + rt->param_floats, sizeof(float),
                                             cudaMemcpyDeviceToHost, stream),
                             "downloading the reduced loss");
    if (rc == 0 && c->comm != NULL) rc = wait_all_reduce(rt, c, timeout, what);
    int sync =
        lf_cuda_checked(cudaStreamSynchronize(stream), what); // after an abort too: nothing left running
    if (rc == 0) rc = sync;
    if (rc == 0) *loss = rt->host_grads[0];
    return rc;
}

// A fake libnccl.so.2 for the emulated CUDA tests (tests/gpu/test_model_gpu.py), built by them with gcc:
// the NCCL functions kernels/device_nccl.cu calls, with NCCL's signatures, acting as rank 0 of a run
// whose other ranks' sum is a known vector. Device memory is host memory under the emulator, so the
// all-reduce is done here, at the call:
//   recv[i] = send[i] + 0.01 * k  (k: the communicator's call, from 1; the other ranks' share of the sum)
// FAKE_NCCL_LOG: a file each call appends a line to ("unique_id", "init NRANKS RANK ID", "all_reduce COUNT
// DATATYPE OP INPLACE", "destroy", "abort"); FAKE_NCCL_FAIL_AT=k: a communicator's call k of ncclAllReduce
// returns ncclRemoteError; FAKE_NCCL_ASYNC_ERROR=1: ncclCommGetAsyncError reports ncclRemoteError.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char internal[128];
} ncclUniqueId;
typedef struct ncclComm {
    int nranks, rank, reduce_calls;
} *ncclComm_t;
typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclInvalidArgument = 4, ncclRemoteError = 6 };

static const char *last_error = "";

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    const char *path = getenv("FAKE_NCCL_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f == NULL) return;
    va_list args;
    va_start(args, fmt);
    vfprintf(f, fmt, args);
    va_end(args);
    fputc('\n', f);
    fclose(f);
}

ncclResult_t ncclGetVersion(int *version) {
    *version = 23206;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "fake-nccl-id");
    log_line("unique_id");
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    *comm = calloc(1, sizeof **comm);
    (*comm)->nranks = nranks;
    (*comm)->rank = rank;
    log_line("init %d %d %.12s", nranks, rank, id.internal);
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int datatype, int op, ncclComm_t comm,
                           void *stream) {
    (void)stream;
    if (comm == NULL) return ncclInvalidArgument;
    int k = ++comm->reduce_calls;
    log_line("all_reduce %zu %d %d %d", count, datatype, op, send == recv);
    const char *fail = getenv("FAKE_NCCL_FAIL_AT");
    if (fail && atoi(fail) == k) {
        last_error = "fake NCCL: the connection to rank 1 was closed";
        return ncclRemoteError;
    }
    if (datatype != 7 || op != 0) return ncclInvalidArgument;
    const float *s = send;
    float *r = recv;
    for (size_t i = 0; i < count; i++)
        r[i] = s[i] + 0.01f * (float)k;
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *error) {
    (void)comm;
    *error = getenv("FAKE_NCCL_ASYNC_ERROR") ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    log_line("destroy");
    free(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    log_line("abort");
    free(comm);
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result) {
    return result == ncclRemoteError ? "remote process exited or there was a network error"
                                     : "fake NCCL error";
}

const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return last_error;
}

// The emulator checked against CUDA's semantics: `selftest` runs the checks below and prints the summary
// line of kernel_check.cuh; `selftest MODE` plants one misuse of CUDA that the emulator must report
// (test_kernels_emulated.py's SELFTEST_FAULTS lists them with the report expected).
#include <stdlib.h>
#include <string.h>

#include <thread>

#include <cublasLt.h>

#include "kernel_check.cuh"

// the emulator's counts (runtime.cpp): kernels run, directly or replayed; cudaGraphLaunch calls; kernels
// run outside replays
extern "C" long long emu_kernel_launch_count(void);
extern "C" long long emu_graph_launch_count(void);
extern "C" long long emu_direct_launch_count(void);

// ---- kernels of the checks ----

// out[0] = sum of in over a block of 256 threads: a tree in shared memory, a barrier between levels
__global__ void tree_sum_kernel(float *out, const float *in, int skip_barrier) {
    __shared__ float s[256];
    s[threadIdx.x] = in[threadIdx.x];
    if (!skip_barrier) __syncthreads(); // without it, thread 0 reads partners that have not written yet
    for (int half = 128; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}

// out: (4, 64) per thread of a block of 64: xor, down, up and idx shuffles with widths 32 and 8
__global__ void shuffle_kernel(int *out) {
    int lane = threadIdx.x % 32, t = threadIdx.x;
    out[t] = __shfl_xor_sync(0xffffffffu, t, 5);
    out[64 + t] = __shfl_down_sync(0xffffffffu, t, 3, 8);
    out[128 + t] = __shfl_up_sync(0xffffffffu, t, 2);
    out[192 + t] =
        __shfl_sync(0xffffffffu, t, lane ^ 31, 32) + (int)__shfl_sync(0xffffffffu, (double)t, 1, 8);
}

// out[t] = the ballot of (lane % 3 == 0) and whether any / all lanes of the warp are below 40
__global__ void vote_kernel(unsigned *out) {
    int lane = threadIdx.x % 32;
    out[threadIdx.x] = __ballot_sync(0xffffffffu, lane % 3 == 0) ^ __any_sync(0xffffffffu, threadIdx.x < 40) ^
                       (__all_sync(0xffffffffu, threadIdx.x < 40) << 1);
}

// one atomicAdd per thread of the grid into sum, and the block count into blocks
__global__ void atomic_kernel(float *sum, unsigned *blocks) {
    atomicAdd(sum, 1.0f);
    if (threadIdx.x == 0 && threadIdx.y == 0) atomicAdd(blocks, 1u);
}

// ids: (blocks, 2, 4, 8) = threadIdx and blockIdx as seen by each thread of blocks (8, 4, 2)
__global__ void index_kernel(int *ids) {
    int t = threadIdx.x + 8 * (threadIdx.y + 4 * threadIdx.z), b = blockIdx.x + gridDim.x * blockIdx.y;
    ids[b * 64 + t] =
        (int)(threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z + 1000 * blockIdx.x + 10000 * blockIdx.y);
}

// dynamic shared memory of n floats, written and read back by every thread after a barrier
__global__ void dynamic_kernel(float *out, int n) {
    extern __shared__ float4 dyn[];
    float *f = (float *)dyn;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        f[i] = (float)i;
    __syncthreads();
    out[threadIdx.x] = f[n - 1 - threadIdx.x];
}

// y[i] = a x[i] + b for i < n
__global__ void axpb_kernel(float *y, const float *x, float a, float b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + b;
}

// ---- kernels of the planted faults ----

__global__ void deadlock_kernel(void) {
    // lanes 32..62 wait for lane 63 at __syncwarp, which waits with warp 0 at __syncthreads
    if (threadIdx.x == 63 || threadIdx.x < 32)
        __syncthreads();
    else
        __syncwarp();
}

__global__ void exit_at_barrier_kernel(void) {
    if (threadIdx.x >= 32) return;
    __syncthreads();
}

__global__ void barrier_after_exit_kernel(void) {
    if (threadIdx.x == 0) return;
    __syncthreads();
}

__global__ void warp_sum_kernel(float *out) {
    float x = warp_sum((float)threadIdx.x);
    if (threadIdx.x == 0) out[0] = x;
}

__global__ void divergent_shuffle_kernel(float *out) {
    float x =
        threadIdx.x < 16 ? __shfl_xor_sync(0xffffffffu, 1.0f, 1) : __shfl_down_sync(0xffffffffu, 2.0f, 1);
    out[threadIdx.x] = x;
}

__global__ void write_at_kernel(float *p, int64_t i) { p[i] = 1.0f; }

__global__ void read_at_kernel(float *out, const float *p, int64_t i) { out[0] = p[i]; }

__global__ void nothing_kernel(void) {}

__global__ void dynamic_overrun_kernel(int n) {
    extern __shared__ float4 dyn[];
    ((float *)dyn)[n] = 1.0f;
}

// ---- the checks ----

static void check_tree_sum(void) {
    std::vector<float> in(256);
    for (int i = 0; i < 256; i++)
        in[i] = (float)i;
    float *d_in = (float *)to_device(in, LF_F32), *d_out = (float *)device_zeros(1, LF_F32);
    tree_sum_kernel<<<1, 256>>>(d_out, d_in, 0);
    CHECK_CUDA(cudaGetLastError());
    check_equal("tree sum with barriers", from_device(d_out, 1, LF_F32), {32640.0f});
    tree_sum_kernel<<<1, 256>>>(d_out, d_in, 1);
    std::vector<float> got = from_device(d_out, 1, LF_F32);
    check_true("tree sum without its first barrier reads unwritten (NaN) shared memory", isnan(got[0]),
               got[0]);
}

static void check_shuffles(void) {
    int *d = (int *)device_zeros(256, LF_F32);
    shuffle_kernel<<<1, 64>>>(d);
    CHECK_CUDA(cudaGetLastError());
    std::vector<int> got(256);
    CHECK_CUDA(cudaMemcpy(got.data(), d, sizeof(int) * 256, cudaMemcpyDeviceToHost));
    std::vector<float> g(256), want(256);
    for (int t = 0; t < 64; t++) {
        int lane = t % 32, warp0 = t - lane;
        want[t] = (float)(t ^ 5);
        want[64 + t] = (float)(lane % 8 + 3 < 8 ? t + 3 : t);
        want[128 + t] = (float)(lane >= 2 ? t - 2 : t);
        want[192 + t] = (float)(warp0 + (lane ^ 31) + (t - lane % 8) + 1);
    }
    for (int i = 0; i < 256; i++)
        g[i] = (float)got[i];
    check_equal("shuffles xor, down (width 8), up, idx (int and double)", g, want);
}

static void check_votes(void) {
    unsigned *d = (unsigned *)device_zeros(64, LF_F32);
    vote_kernel<<<1, 64>>>(d);
    CHECK_CUDA(cudaGetLastError());
    std::vector<unsigned> got(64);
    CHECK_CUDA(cudaMemcpy(got.data(), d, sizeof(unsigned) * 64, cudaMemcpyDeviceToHost));
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3)
        ballot |= 1u << l;
    std::vector<float> g(64), want(64);
    for (int t = 0; t < 64; t++) {
        g[t] = (float)(got[t] ^ ballot);
        want[t] = t < 32 ? 3.0f : 1.0f; // warp 0: any and all; warp 1 (threads 32..63): any only
    }
    check_equal("ballot, any, all", g, want);
}

static void check_atomics_and_indices(void) {
    float *sum = (float *)device_zeros(1, LF_F32);
    unsigned *blocks = (unsigned *)device_zeros(1, LF_F32);
    atomic_kernel<<<dim3(7, 3, 2), dim3(16, 4)>>>(sum, blocks);
    CHECK_CUDA(cudaGetLastError());
    std::vector<float> s = from_device(sum, 1, LF_F32);
    unsigned nb = 0;
    CHECK_CUDA(cudaMemcpy(&nb, blocks, sizeof nb, cudaMemcpyDeviceToHost));
    check_equal("atomicAdd over a 3-d grid of 2-d blocks", {s[0], (float)nb}, {42.0f * 64.0f, 42.0f});

    int *ids = (int *)device_zeros(6 * 64, LF_F32);
    index_kernel<<<dim3(3, 2), dim3(8, 4, 2)>>>(ids);
    CHECK_CUDA(cudaGetLastError());
    std::vector<int> got(6 * 64);
    CHECK_CUDA(cudaMemcpy(got.data(), ids, sizeof(int) * got.size(), cudaMemcpyDeviceToHost));
    std::vector<float> g(got.size()), want(got.size());
    for (int b = 0; b < 6; b++)
        for (int t = 0; t < 64; t++) {
            g[b * 64 + t] = (float)got[b * 64 + t];
            want[b * 64 + t] =
                (float)(t % 8 + 10 * (t / 8 % 4) + 100 * (t / 32) + 1000 * (b % 3) + 10000 * (b / 3));
        }
    check_equal("threadIdx, blockIdx of 3-d blocks", g, want);
}

static void check_dynamic_shared(void) {
    const int n = 20000; // 80000 bytes: past the default 48 KiB, so the limit is raised first
    float *out = (float *)device_zeros(128, LF_F32);
    CHECK_CUDA(cudaFuncSetAttribute(dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n * 4));
    dynamic_kernel<<<2, 128, n * 4>>>(out, n);
    CHECK_CUDA(cudaGetLastError());
    std::vector<float> want(128);
    for (int t = 0; t < 128; t++)
        want[t] = (float)(n - 1 - t);
    check_equal("dynamic shared memory raised to 80000 bytes", from_device(out, 128, LF_F32), want);
}

// the emulator's conversions against csrc/core/convert.c's (NumPy's and PyTorch's) on many bit patterns
static void check_conversions(void) {
    size_t bad_bf16 = 0, bad_f16 = 0, bad_back = 0;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t u = (uint32_t)x;
        if (i < 65536) u = (uint32_t)i << 16 | (i & 1 ? 0x8000u : 0x7fffu); // ties and near-ties of bf16
        if (i >= 65536 && i < 131072) u = 0x33000000u + (uint32_t)(i - 65536) * 4096u; // f16's range
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) {
            bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(f)) != 0x7fffu;
            bad_f16 += __half_as_ushort(__float2half_rn(f)) != 0x7fffu;
            continue;
        }
        bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(f)) != lf_f32_to_bf16(f);
        bad_f16 += __half_as_ushort(__float2half_rn(f)) != lf_f32_to_f16(f);
        uint16_t h = (uint16_t)u;
        if (!isnan(lf_f16_to_f32(h)))
            bad_back += __half2float(__ushort_as_half(h)) != lf_f16_to_f32(h) ||
                        __bfloat162float(__ushort_as_bfloat16(h)) != lf_bf16_to_f32(h);
    }
    check_equal("f32 -> bf16, f32 -> f16, back: round to nearest even, as csrc/core/convert.c",
                {(float)bad_bf16, (float)bad_f16, (float)bad_back}, {0.0f, 0.0f, 0.0f});
}

// D (m x n) = alpha Y W + beta D, column-major f32, Y: m x k, W: k x n, on stream; the descriptors
// are destroyed before it returns (a capture must have copied what it needs)
static void matmul_f32(cublasLtHandle_t lt, const float *Y, const float *W, float *D, int m, int n, int k,
                       float alpha, float beta, void *workspace, cudaStream_t stream) {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t y, w, d;
    cublasLtMatmulPreference_t pref;
    CHECK_CUDA(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CHECK_CUDA(cublasLtMatrixLayoutCreate(&y, CUDA_R_32F, m, k, m));
    CHECK_CUDA(cublasLtMatrixLayoutCreate(&w, CUDA_R_32F, k, n, k));
    CHECK_CUDA(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, m, n, m));
    CHECK_CUDA(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t bytes = 1 << 20;
    CHECK_CUDA(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
                                                    sizeof bytes));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    CHECK_CUDA(cublasLtMatmulAlgoGetHeuristic(lt, op, y, w, d, d, pref, 1, &result, &found));
    CHECK_CUDA(cublasLtMatmul(lt, op, &alpha, Y, y, W, w, &beta, D, d, D, d, &result.algo, workspace, bytes,
                              stream));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(d);
    cublasLtMatrixLayoutDestroy(w);
    cublasLtMatrixLayoutDestroy(y);
    cublasLtMatmulDescDestroy(op);
}

// A graph captured from a stream: a pinned host-to-device copy, a kernel, a memset, a cuBLASLt matmul,
// a device-to-device and a device-to-host copy. Nothing runs while capturing; each replay takes the
// inputs of that moment and the kernel's arguments and alpha as captured.
static void check_graph_replays(void) {
    const int m = 8, k = 16, n = 4;
    float *x_host, *out_host;
    CHECK_CUDA(cudaMallocHost(&x_host, sizeof(float) * m * k));
    CHECK_CUDA(cudaMallocHost(&out_host, sizeof(float) * m * n));
    for (int i = 0; i < m * n; i++)
        out_host[i] = -1.0f;
    std::vector<float> w = random_vector(k * n, -1.0f, 1.0f, 7);
    float *x = (float *)device_zeros(m * k, LF_F32), *y = (float *)device_zeros(m * k, LF_F32);
    float *d = (float *)device_zeros(m * n, LF_F32), *e = (float *)device_zeros(m * n, LF_F32);
    float *d_w = (float *)to_device(w, LF_F32), *workspace;
    CHECK_CUDA(cudaMalloc(&workspace, 1 << 20));
    CHECK_CUDA(cudaMemset(y, 0xff, sizeof(float) * m * k)); // NaN until a kernel writes it
    cublasLtHandle_t lt;
    CHECK_CUDA(cublasLtCreate(&lt));
    cudaStream_t stream;
    CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    const long long kernels = emu_kernel_launch_count(), direct = emu_direct_launch_count();
    float a = 2.0f, b = 0.5f, alpha = 0.25f;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    CHECK_CUDA(cudaStreamIsCapturing(stream, &status));
    const int capturing = status == cudaStreamCaptureStatusActive;
    CHECK_CUDA(cudaMemcpyAsync(x, x_host, sizeof(float) * m * k, cudaMemcpyHostToDevice, stream));
    axpb_kernel<<<2, 64, 0, stream>>>(y, x, a, b, m * k);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaFuncSetAttribute(axpb_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 0));
    CHECK_CUDA(cudaMemsetAsync(d, 0, sizeof(float) * m * n, stream));
    matmul_f32(lt, y, d_w, d, m, n, k, alpha, 1.0f, workspace, stream);
    CHECK_CUDA(cudaMemcpyAsync(e, d, sizeof(float) * m * n, cudaMemcpyDeviceToDevice, stream));
    CHECK_CUDA(cudaMemcpyAsync(out_host, e, sizeof(float) * m * n, cudaMemcpyDeviceToHost, stream));
    cudaGraph_t graph = nullptr;
    CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
    CHECK_CUDA(cudaStreamIsCapturing(stream, &status));
    check_true("cudaStreamIsCapturing: active while capturing, none after",
               capturing && status == cudaStreamCaptureStatusNone, status);
    std::vector<float> y_now = from_device(y, m * k, LF_F32);
    check_true("nothing runs while capturing (no kernel, the output untouched, y still NaN)",
               emu_kernel_launch_count() == kernels && out_host[0] == -1.0f && isnan(y_now[0]),
               (double)(emu_kernel_launch_count() - kernels));

    cudaGraphExec_t exec = nullptr;
    CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    CHECK_CUDA(cudaGraphDestroy(graph)); // the instantiation is independent of it
    const float captured_a = a, captured_b = b, captured_alpha = alpha;
    a = b = alpha = 100.0f; // changed after the capture: the replays use the values captured
    const long long graphs = emu_graph_launch_count();
    for (int replay = 0; replay < 3; replay++) {
        std::vector<float> xs = random_vector(m * k, -2.0f, 2.0f, 100 + replay);
        memcpy(x_host, xs.data(), sizeof(float) * m * k);
        CHECK_CUDA(cudaGraphLaunch(exec, stream));
        CHECK_CUDA(cudaStreamSynchronize(stream));
        std::vector<float> want(m * n, 0.0f), got(out_host, out_host + m * n);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double sum = 0.0;
                for (int kk = 0; kk < k; kk++)
                    sum += (double)(captured_a * xs[i + kk * m] + captured_b) * w[kk + j * k];
                want[i + j * m] = (float)(captured_alpha * sum);
            }
        char what[96];
        snprintf(what, sizeof what, "graph replay %d: copy, kernel, memset, matmul, copies", replay + 1);
        check_close(what, LF_F32, got, want, tolerance(LF_F32));
    }
    check_equal("3 graph launches, 3 kernels in them, none outside",
                {(float)(emu_graph_launch_count() - graphs), (float)(emu_kernel_launch_count() - kernels),
                 (float)(emu_direct_launch_count() - direct)},
                {3.0f, 3.0f, 0.0f});
    CHECK_CUDA(cudaGraphExecDestroy(exec));
    CHECK_CUDA(cudaStreamDestroy(stream));
    cublasLtDestroy(lt);
    CHECK_CUDA(cudaFreeHost(x_host));
    CHECK_CUDA(cudaFreeHost(out_host));
}

// what a capture in the relaxed mode allows: allocation, and the legacy stream (the capturing stream is
// non-blocking); cudaGetLastError and cudaPeekAtLastError in any mode
static void check_relaxed_capture(void) {
    cudaStream_t stream;
    CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    float *p = (float *)device_zeros(4, LF_F32), *q = nullptr;
    CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    const int malloc_ok = cudaMalloc(&q, 16) == cudaSuccess && cudaFree(q) == cudaSuccess;
    const int legacy_ok = cudaMemsetAsync(p, 0, 16, 0) == cudaSuccess; // runs now: not captured
    const int errors_ok = cudaPeekAtLastError() == cudaSuccess && cudaGetLastError() == cudaSuccess;
    cudaGraph_t graph = nullptr;
    const int end_ok = cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph != nullptr;
    std::vector<float> got = from_device(p, 4, LF_F32);
    check_true("relaxed capture: cudaMalloc, cudaFree, legacy-stream work (run at once), an empty graph",
               malloc_ok && legacy_ok && errors_ok && end_ok && got[0] == 0.0f, got[0]);
    CHECK_CUDA(cudaGraphDestroy(graph));
    CHECK_CUDA(cudaStreamDestroy(stream));
}

static void check_launch_errors_are_returned(void) {
    // a clean launch leaves no error, and the copy helpers refuse nothing valid
    nothing_kernel<<<dim3(2147483647u / 1048576u, 2, 3), dim3(1, 1, 64)>>>();
    check_equal("a valid launch leaves cudaGetLastError at 0", {(float)cudaGetLastError()}, {0.0f});
}

// LF_EMU_DEVICE_COUNT devices (1 by default); the current device is per host thread, 0 in a new one
static void check_devices(void) {
    int count = 0, current = -1;
    const int one = cudaGetDeviceCount(&count) == cudaSuccess && count == 1;
    const int refused =
        cudaSetDevice(1) == cudaErrorInvalidDevice && cudaGetLastError() == cudaErrorInvalidDevice;
    setenv("LF_EMU_DEVICE_COUNT", "2", 1);
    const int two = cudaGetDeviceCount(&count) == cudaSuccess && count == 2 &&
                    cudaSetDevice(1) == cudaSuccess && cudaGetDevice(&current) == cudaSuccess && current == 1;
    int in_thread = -1;
    std::thread([&] { (void)cudaGetDevice(&in_thread); }).join();
    const int stays = cudaSetDevice(2) == cudaErrorInvalidDevice &&
                      cudaGetLastError() == cudaErrorInvalidDevice &&
                      cudaGetDevice(&current) == cudaSuccess && current == 1;
    CHECK_CUDA(cudaSetDevice(0));
    unsetenv("LF_EMU_DEVICE_COUNT");
    check_true("1 device by default, LF_EMU_DEVICE_COUNT=2 gives 2, the current device per thread",
               one && refused && two && in_thread == 0 && stays, (float)in_thread);
}

// a misuse of stream capture or graphs (test_kernels_emulated.py's GRAPH_FAULTS): prints the codes the
// calls returned, then those of cudaStreamEndCapture where a capture was begun (the graph NULL or not)
static int graph_fault(const char *mode) {
    cudaStream_t stream, blocking;
    CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CHECK_CUDA(cudaStreamCreate(&blocking));
    float *p = (float *)device_zeros(64, LF_F32), *q = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    int codes[4] = {-1, -1, -1, -1};
    cudaStream_t captured = strcmp(mode, "capture_legacy_work") ? stream : blocking;
    if (!strcmp(mode, "capture_launch_on_capturing") || !strcmp(mode, "exec_after_destroy")) {
        CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        CHECK_CUDA(cudaMemsetAsync(p, 0, 16, stream));
        CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
        CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
        CHECK_CUDA(cudaGraphDestroy(graph));
        graph = nullptr;
    }
    if (!strcmp(mode, "capture_legacy_stream")) {
        codes[0] = cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal);
        captured = nullptr;
    } else if (!strcmp(mode, "end_not_capturing")) {
        codes[0] = cudaStreamEndCapture(stream, &graph);
        captured = nullptr;
    } else if (!strcmp(mode, "graph_use_after_free")) { // checked again at the replay
        CHECK_CUDA(cudaMalloc(&q, 16));
        CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        write_at_kernel<<<1, 1, 0, stream>>>(q, 0);
        CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
        CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
        CHECK_CUDA(cudaFree(q));
        codes[0] = cudaGraphLaunch(exec, stream);
        captured = nullptr;
    } else if (!strcmp(mode, "exec_after_destroy")) {
        CHECK_CUDA(cudaGraphExecDestroy(exec));
        codes[0] = cudaGraphLaunch(exec, stream);
        captured = nullptr;
    } else {
        const cudaStreamCaptureMode capture_mode = !strcmp(mode, "capture_allocations")
                                                       ? cudaStreamCaptureModeThreadLocal
                                                       : cudaStreamCaptureModeGlobal;
        CHECK_CUDA(cudaStreamBeginCapture(captured, capture_mode));
        if (!strcmp(mode, "capture_sync_stream")) codes[0] = cudaStreamSynchronize(stream);
        if (!strcmp(mode, "capture_device_sync")) codes[0] = cudaDeviceSynchronize();
        if (!strcmp(mode, "capture_sync_copy")) {
            float host[4];
            codes[0] = cudaMemcpy(host, p, sizeof host, cudaMemcpyDeviceToHost);
        }
        if (!strcmp(mode, "capture_allocations")) {
            void *h = nullptr;
            codes[0] = cudaMalloc(&q, 16), codes[1] = cudaFree(p);
            codes[2] = cudaMallocHost(&h, 16), codes[3] = cudaFreeHost(h);
        }
        if (!strcmp(mode, "capture_legacy_work")) {
            write_at_kernel<<<1, 1>>>(p, 0);
            codes[0] = cudaGetLastError();
        }
        if (!strcmp(mode, "capture_twice"))
            codes[0] = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
        if (!strcmp(mode, "capture_launch_on_capturing")) codes[0] = cudaGraphLaunch(exec, stream);
        if (!strcmp(mode, "capture_destroy_stream")) codes[0] = cudaStreamDestroy(stream);
        if (!strcmp(mode, "capture_pageable_copy")) {
            static float pageable[4];
            codes[0] = cudaMemcpyAsync(p, pageable, sizeof pageable, cudaMemcpyHostToDevice, stream);
        }
        if (!strcmp(mode, "capture_bad_launch")) {
            nothing_kernel<<<1, 2048, 0, stream>>>();
            codes[0] = cudaGetLastError();
        }
    }
    int end = -1;
    if (captured != nullptr) end = cudaStreamEndCapture(captured, &graph);
    printf("planted fault %s: returned %d %d %d %d, end capture %d, graph %s\n", mode, codes[0], codes[1],
           codes[2], codes[3], end, graph != nullptr ? "made" : "null");
    return 0;
}

static int planted_fault(const char *mode) {
    if (!strncmp(mode, "capture_", 8) || !strncmp(mode, "graph_", 6) || !strcmp(mode, "end_not_capturing") ||
        !strcmp(mode, "exec_after_destroy"))
        return graph_fault(mode);
    float *p = (float *)device_zeros(100, LF_F32);
    if (!strcmp(mode, "deadlock")) deadlock_kernel<<<1, 64>>>();
    if (!strcmp(mode, "exit_at_barrier")) exit_at_barrier_kernel<<<1, 64>>>();
    if (!strcmp(mode, "barrier_after_exit")) barrier_after_exit_kernel<<<1, 64>>>();
    if (!strcmp(mode, "partial_warp_mask")) warp_sum_kernel<<<1, 48>>>(p);
    if (!strcmp(mode, "divergent_shuffle")) divergent_shuffle_kernel<<<1, 32>>>(p);
    if (!strcmp(mode, "write_past_end")) write_at_kernel<<<1, 1>>>(p, 100);
    if (!strcmp(mode, "read_far_past_end"))
        read_at_kernel<<<1, 1>>>(p, p, 300); // into the guard page after the padding
    if (!strcmp(mode, "use_after_free")) {
        float *q = (float *)device_zeros(100, LF_F32);
        CHECK_CUDA(cudaFree(q));
        read_at_kernel<<<1, 1>>>(p, q, 0);
        write_at_kernel<<<1, 1>>>(p, q - p); // the pointer itself is p's; the address is q's
    }
    if (!strcmp(mode, "host_pointer")) {
        static float host[4];
        write_at_kernel<<<1, 1>>>(host, 0);
    }
    if (!strcmp(mode, "grid_y")) nothing_kernel<<<dim3(1, 65536), 32>>>();
    if (!strcmp(mode, "dynamic_shared")) dynamic_kernel<<<1, 32, 64 * 1024>>>(p, 16);
    if (!strcmp(mode, "shared_attribute")) // past sm_86's 99 KiB
        cudaFuncSetAttribute(dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
    if (!strcmp(mode, "dynamic_shared_overrun")) dynamic_overrun_kernel<<<1, 1, 64>>>(16);
    if (!strcmp(mode, "copy_out_of_bounds")) {
        std::vector<float> host(101);
        cudaMemcpy(host.data(), p, 101 * sizeof(float), cudaMemcpyDeviceToHost);
    }
    printf("planted fault %s: cudaGetLastError %d\n", mode, (int)cudaGetLastError());
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) return planted_fault(argv[1]);
    check_tree_sum();
    check_shuffles();
    check_votes();
    check_atomics_and_indices();
    check_dynamic_shared();
    check_conversions();
    check_launch_errors_are_returned();
    check_graph_replays();
    check_relaxed_capture();
    check_devices();
    return check_summary("selftest");
}

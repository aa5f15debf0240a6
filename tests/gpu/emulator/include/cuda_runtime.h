// The CUDA runtime and the device built-ins lorafast's kernels use, emulated on the CPU for
// tests/gpu/test_kernels_emulated.py (see its docstring for what the emulation checks and what it
// cannot). Sources are first rewritten by tests/gpu/emulator/transform.py: a launch
// k<<<grid, block, smem, stream>>>(args) becomes emu_launch("k", k, grid, block, smem, stream, args),
// a __shared__ array a static that the emulator fills with NaN bytes for every block, and an
// extern __shared__ array the block's dynamic shared memory.
//
// A launch runs the blocks of its grid one after another in a shuffled order. The threads of a block
// are fibers (runtime.cpp): each runs until it reaches a barrier (__syncthreads, or a warp operation:
// __syncwarp, the shuffles, the votes), so a missing barrier shows as a read of data not yet written
// (NaN bytes) or already overwritten. Misused barriers (one some threads never reach, a thread that
// exits while others wait, a partial or mismatched warp mask) stop the program with "EMU FAIL";
// CUDA errors the real runtime would report (an invalid launch, a copy outside an allocation, a host
// pointer passed to a kernel) print "EMU ERROR" and make the program exit non-zero.
#pragma once

#ifndef LF_EMULATED
#define LF_EMULATED 1
#endif

#if !defined(__x86_64__) || !defined(__linux__)
#error "the CUDA emulator runs on x86-64 Linux"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA keywords ----

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))
// __shared__ is rewritten by transform.py; one it missed is a compile error here, on purpose

// ---- vector types ----

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return {x, y}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---- the running thread: set by the emulator's scheduler before it resumes a fiber ----

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---- runtime types ----

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorStreamCaptureWrongThread = 908,
    cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

// library_types.h's element types (cuBLASLt's operand types)
typedef enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_8I = 3,
    CUDA_R_32I = 10,
    CUDA_R_16BF = 14,
} cudaDataType;

typedef struct CUstream_st *cudaStream_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

// stream capture (driver_types.h's values): a capturing stream records its work into a graph
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, sharedMemPerMultiprocessor;
    int regsPerBlock, warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3];
    int major, minor, multiProcessorCount, maxThreadsPerMultiProcessor, l2CacheSize, clockRate;
};

// ---- runtime API (runtime.cpp); calls run synchronously, streams order nothing, but a capturing
// stream records its work (kernels, copies, memsets, cuBLASLt calls) into a graph, run again by each
// cudaGraphLaunch of the graph's instantiation ----

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void *ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

template <typename T> static inline cudaError_t cudaMalloc(T **ptr, size_t bytes) {
    return cudaMalloc((void **)ptr, bytes);
}
template <typename T> static inline cudaError_t cudaMallocHost(T **ptr, size_t bytes) {
    return cudaMallocHost((void **)ptr, bytes);
}

cudaError_t emu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value);
template <typename T>
static inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value) {
    return emu_func_set_attribute((const void *)func, attr, value);
}

// ---- kernel launches ----

struct emu_launch_config {
    const char *name;   // the kernel as written at the launch
    const void *kernel; // its address (the key of cudaFuncSetAttribute)
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    size_t param_bytes;
    void (*body)(void *); // runs the kernel in the current thread on context, its emu_kernel_call
    void *context;
    bool (*check_pointers)(const char *name, const void *context); // reports those not device memory
    void *(*copy)(const void *context);                            // a copy on the heap (a graph's)
    void (*destroy)(void *context);                                // frees such a copy
};

void emu_run_kernel(const emu_launch_config &launch);
bool emu_check_kernel_pointer(const char *kernel, int index, const void *p);

template <typename T> static inline T emu_implicit(T value) { return value; }

template <typename T> static inline bool emu_check_param(const char *kernel, int index, const T &value) {
    if constexpr (std::is_pointer_v<T>) return emu_check_kernel_pointer(kernel, index, (const void *)value);
    return true;
}

// a kernel with its parameters by value: what each thread of a launch runs, and what a capturing
// stream records (copied) for the replays of its graph
template <typename... P> struct emu_kernel_call {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> params;

    static void run(void *call) { // each thread calls kernel on its own copy of the parameters
        const emu_kernel_call &c = *(const emu_kernel_call *)call;
        std::apply(c.kernel, c.params);
    }
    static bool check_pointers(const char *name, const void *call) {
        bool ok = true;
        int index = 0;
        std::apply([&](const auto &...p) { ((ok = emu_check_param(name, index++, p) && ok), ...); },
                   ((const emu_kernel_call *)call)->params);
        return ok;
    }
    static void *copy(const void *call) { return new emu_kernel_call(*(const emu_kernel_call *)call); }
    static void destroy(void *call) { delete (emu_kernel_call *)call; }
};

// kernel<<<grid, block, smem, stream>>>(args...): the arguments convert to the parameters' types as a
// launch converts them, every pointer among them must be device memory, then each thread of the grid
// runs kernel on its own copy of the parameters (or the capturing stream records the launch)
template <typename... P, typename... A>
static void emu_launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                       cudaStream_t stream, A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "a kernel launch with the wrong number of arguments");
    using call_t = emu_kernel_call<P...>;
    call_t call{kernel, {emu_implicit<std::decay_t<P>>(std::forward<A>(args))...}};
    emu_launch_config launch;
    launch.name = name, launch.kernel = (const void *)kernel, launch.grid = grid, launch.block = block;
    launch.smem = smem, launch.stream = stream, launch.param_bytes = (0 + ... + sizeof(P));
    launch.body = &call_t::run, launch.context = &call, launch.check_pointers = &call_t::check_pointers;
    launch.copy = &call_t::copy, launch.destroy = &call_t::destroy;
    emu_run_kernel(launch);
}

// ---- shared memory (transform.py's rewrites call these) ----

void *emu_dynamic_shared(void);
bool emu_shared_array(void *array, size_t bytes);

// ---- barriers and warp operations ----

void __syncthreads(void);
void __syncwarp(unsigned mask = 0xffffffffu);
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

enum emu_warp_kind { EMU_SHFL_IDX, EMU_SHFL_UP, EMU_SHFL_DOWN, EMU_SHFL_XOR, EMU_VOTE };
uint64_t emu_warp_exchange(const char *what, emu_warp_kind kind, unsigned mask, uint64_t value, int arg,
                           int width);
unsigned emu_warp_vote(const char *what, unsigned mask, int predicate);
unsigned __activemask(void);

template <typename T>
static inline T emu_shuffle(const char *what, emu_warp_kind kind, unsigned mask, T value, int arg,
                            int width) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                  "shuffles move values of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof value);
    bits = emu_warp_exchange(what, kind, mask, bits, arg, width);
    memcpy(&value, &bits, sizeof value);
    return value;
}
template <typename T> static inline T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
    return emu_shuffle("__shfl_sync", EMU_SHFL_IDX, mask, value, src_lane, width);
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    return emu_shuffle("__shfl_up_sync", EMU_SHFL_UP, mask, value, (int)delta, width);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    return emu_shuffle("__shfl_down_sync", EMU_SHFL_DOWN, mask, value, (int)delta, width);
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    return emu_shuffle("__shfl_xor_sync", EMU_SHFL_XOR, mask, value, lane_mask, width);
}
static inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return emu_warp_vote("__ballot_sync", mask, predicate);
}
static inline int __any_sync(unsigned mask, int predicate) {
    return emu_warp_vote("__any_sync", mask, predicate) != 0;
}
static inline int __all_sync(unsigned mask, int predicate) {
    return emu_warp_vote("__all_sync", mask, predicate) == mask;
}

// ---- atomics: a fiber runs uninterrupted between barriers, so a read-modify-write is atomic ----

template <typename T> static inline T emu_atomic_add(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
static inline int atomicAdd(int *p, int v) { return emu_atomic_add(p, v); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return emu_atomic_add(p, v); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return emu_atomic_add(p, v);
}
static inline float atomicAdd(float *p, float v) { return emu_atomic_add(p, v); }
static inline double atomicAdd(double *p, double v) { return emu_atomic_add(p, v); }
static inline int atomicSub(int *p, int v) { return emu_atomic_add(p, -v); }
static inline unsigned atomicSub(unsigned *p, unsigned v) { return emu_atomic_add(p, 0u - v); }
template <typename T> static inline T emu_atomic_exchange(T *p, T v) {
    T old = *p;
    *p = v;
    return old;
}
static inline int atomicExch(int *p, int v) { return emu_atomic_exchange(p, v); }
static inline unsigned atomicExch(unsigned *p, unsigned v) { return emu_atomic_exchange(p, v); }
static inline unsigned long long atomicExch(unsigned long long *p, unsigned long long v) {
    return emu_atomic_exchange(p, v);
}
static inline float atomicExch(float *p, float v) { return emu_atomic_exchange(p, v); }
template <typename T> static inline T emu_atomic_cas(T *p, T compare, T v) {
    T old = *p;
    if (old == compare) *p = v;
    return old;
}
static inline int atomicCAS(int *p, int c, int v) { return emu_atomic_cas(p, c, v); }
static inline unsigned atomicCAS(unsigned *p, unsigned c, unsigned v) { return emu_atomic_cas(p, c, v); }
static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long c,
                                           unsigned long long v) {
    return emu_atomic_cas(p, c, v);
}
template <typename T> static inline T emu_atomic_max(T *p, T v) {
    T old = *p;
    if (v > old) *p = v;
    return old;
}
template <typename T> static inline T emu_atomic_min(T *p, T v) {
    T old = *p;
    if (v < old) *p = v;
    return old;
}
static inline int atomicMax(int *p, int v) { return emu_atomic_max(p, v); }
static inline unsigned atomicMax(unsigned *p, unsigned v) { return emu_atomic_max(p, v); }
static inline long long atomicMax(long long *p, long long v) { return emu_atomic_max(p, v); }
static inline unsigned long long atomicMax(unsigned long long *p, unsigned long long v) {
    return emu_atomic_max(p, v);
}
static inline int atomicMin(int *p, int v) { return emu_atomic_min(p, v); }
static inline unsigned atomicMin(unsigned *p, unsigned v) { return emu_atomic_min(p, v); }
static inline long long atomicMin(long long *p, long long v) { return emu_atomic_min(p, v); }
static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    return emu_atomic_min(p, v);
}
static inline int atomicAnd(int *p, int v) {
    int old = *p;
    *p = old & v;
    return old;
}
static inline unsigned atomicAnd(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old & v;
    return old;
}
static inline int atomicOr(int *p, int v) {
    int old = *p;
    *p = old | v;
    return old;
}
static inline unsigned atomicOr(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old | v;
    return old;
}
static inline int atomicXor(int *p, int v) {
    int old = *p;
    *p = old ^ v;
    return old;
}
static inline unsigned atomicXor(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old ^ v;
    return old;
}

// ---- integer and float intrinsics ----

static inline int min(int a, int b) { return a < b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

// round-to-nearest arithmetic that is never fused (the emulator is built with -ffp-contract=off)
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
// the fast approximations, as their exact counterparts (glibc declares __expf, __logf, __sinf, __cosf,
// __powf itself)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x > 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }

static inline unsigned __float_as_uint(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    return u;
}
static inline int __float_as_int(float x) {
    int u;
    memcpy(&u, &x, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static inline float __int_as_float(int u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static inline long long __double_as_longlong(double x) {
    long long u;
    memcpy(&u, &x, 8);
    return u;
}
static inline double __longlong_as_double(long long u) {
    double x;
    memcpy(&x, &u, 8);
    return x;
}
static inline int __float2int_rn(float x) { return (int)rintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline unsigned __float2uint_rn(float x) { return (unsigned)rintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __double2float_rn(double x) { return (float)x; }

template <typename T> static inline T __ldg(const T *p) { return *p; }

// The CUDA emulator's runtime: device memory, kernel launches, barriers and warp operations.
//
// Device memory: every cudaMalloc is its own mapping, filled with 0xff bytes (NaN in f32, bf16, f16 and
// f64), its data ending where an inaccessible page begins (another page guards its start), 256-byte
// aligned. The padding between the data and the guard pages is checked after every launch and
// cuBLASLt call: a write there is reported as a write out of bounds; a read or write reaching a guard
// page (or freed memory, which stays inaccessible) stops the program with the kernel, block and thread.
//
// Launches: the grid's blocks run one at a time in a shuffled order (LF_EMU_SEED changes it). The threads
// of a block are fibers on their own stacks, switched by a few instructions of assembly (ucontext's
// swapcontext makes a system call per switch). Each runs until it waits at a barrier or exits; the
// scheduler then resumes a thread that can go on, from the first warp that has one, so a warp runs as
// far as it can (through its warp operations, to a __syncthreads) before the next warp starts: a missing
// __syncthreads lets it read what other warps have not written yet, or overwrite what they have not read
// yet; a missing __syncwarp does the same between lanes. Warps and lanes run in increasing or decreasing
// order (chosen per block). Shared memory is filled with 0xff bytes before each block; dynamic shared
// memory ends at an inaccessible page. No thread able to go on while some have not exited is a deadlock.
//
// Stream capture: work enqueued on a capturing stream (kernel launches, cudaMemcpyAsync, cudaMemsetAsync,
// cuBLASLt calls) is checked and recorded by value, not run; cudaGraphLaunch of the graph's instantiation
// runs it again in order, each with the checks of a direct call. The misuses CUDA refuses are reported
// with CUDA's codes and invalidate the capture as CUDA does (cudaStreamEndCapture then returns
// cudaErrorStreamCaptureInvalidated and no graph): synchronizing a capturing stream or the device;
// cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, cudaMemcpy and cudaMemset (synchronous) while a
// capture not in the relaxed mode is active; the legacy stream while a blocking stream captures; a
// pageable host buffer in a captured copy; an invalid launch; a graph launched into, or the destruction
// of, a capturing stream. Graphs and their instantiations are never freed, so a use after their
// destruction is reported too.
//
// Built with -fsanitize=address, the fiber switches are announced to AddressSanitizer.
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "emu_internal.h" // after the standard headers (cuda_runtime.h's __noinline__)

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// a graph: the work its capture recorded, in order (a captured stream is a chain); an instantiation
// holds a copy of it. A destroyed one stays, marked, so that a use after it is reported.
struct CUgraph_st {
    std::vector<emu_graph_work> nodes;
    bool destroyed = false;
};
struct CUgraphExec_st : CUgraph_st {};

// emu_switch(save, next): pushes the callee-saved registers, stores the stack pointer in *save, and
// continues the fiber whose stack pointer is next (popping its registers and its return address, and
// jumping there)
extern "C" void emu_switch(void **save, void *next);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    popq %r8
    jmp *%r8
    .size emu_switch, .-emu_switch
)");

namespace {

// Limits of the smallest device lorafast builds for (CUDA_ARCHS 80, 86, 89, 90): a block's dynamic shared
// memory may be raised to 99 KiB on sm_86 and sm_89 (163 KiB on sm_80, 227 KiB on sm_90).
constexpr size_t STATIC_SHARED_LIMIT = 48 * 1024, DEFAULT_DYNAMIC_SHARED_LIMIT = 48 * 1024;
constexpr size_t OPTIN_SHARED_LIMIT = 99 * 1024;
constexpr size_t PARAM_LIMIT = 32764; // bytes of kernel parameters (CUDA 12.1 and later, Volta and later)
constexpr int MAX_THREADS = 1024, WARP = 32;
constexpr size_t ALLOCATION_ALIGNMENT = 256;
constexpr uint64_t MAX_BLOCKS = (uint64_t)1 << 26; // more would take hours to emulate
constexpr size_t STACK_COLOURING = 128 * 1024;     // of a thread's stack, at most this is left unused

size_t page_bytes, stack_bytes;
bool profile;                                   // LF_EMU_PROFILE: every launch's time on stderr
long error_count, launch_count;                 // launches: of kernels run, directly or replayed
long graph_launch_count, replayed_launch_count; // cudaGraphLaunch calls, the kernels they ran
cudaError_t last_error = cudaSuccess;
std::mt19937_64 rng;

// ---- reports ----

enum fiber_state { FIBER_NEW, FIBER_RUNNING, FIBER_WAITING, FIBER_DONE };

// threads meeting: when the last expected one arrives, the waiting ones can go on
struct barrier {
    int arrived = 0, expected = 0;
    unsigned mask = 0;      // warp barriers: the lanes of this meeting
    const char *what = "";  // warp barriers: the operation of this meeting
    long generation = 0;    // meetings completed
    int *waiting = nullptr; // the threads waiting, arrived - 1 of them
};

struct fiber {
    void *sp = nullptr;
    char *stack = nullptr;
    uint3 tid = {0, 0, 0};
    int index = 0, warp = 0, lane = 0;
    fiber_state state = FIBER_DONE;
    void *fake_stack = nullptr; // AddressSanitizer's bookkeeping of the fiber's stack
};

const emu_launch_config *launch; // the kernel being run, or NULL
const char *library_call;        // the library call being emulated, or NULL
fiber *current;                  // the thread running, or NULL (the scheduler or host code)
bool replaying;                  // cudaGraphLaunch runs a graph's work

void context(char *out, size_t size) {
    const char *replay = replaying ? ", replayed by cudaGraphLaunch" : "";
    if (current != nullptr)
        snprintf(out, size, " [kernel %s%s, block (%u,%u,%u), thread (%u,%u,%u)]", launch->name, replay,
                 blockIdx.x, blockIdx.y, blockIdx.z, current->tid.x, current->tid.y, current->tid.z);
    else if (launch != nullptr)
        snprintf(out, size, " [kernel %s%s]", launch->name, replay);
    else if (library_call != nullptr)
        snprintf(out, size, " [%s%s]", library_call, replay);
    else
        snprintf(out, size, " [%s]", replaying ? "cudaGraphLaunch" : "host code");
}

void report(const char *label, const char *fmt, va_list args) {
    char where[512];
    context(where, sizeof where);
    fflush(stdout);
    fprintf(stderr, "%s: ", label);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "%s\n", where);
    fflush(stderr);
}

cudaError_t record(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

// ---- device memory ----

struct allocation {
    char *map; // the whole mapping: guard page, body, guard page
    size_t map_bytes;
    char *data; // the caller's bytes, at the end of the body
    size_t bytes;
    bool freed;
};

std::map<uintptr_t, allocation> allocations; // by data address
std::map<uintptr_t, size_t> pinned;          // cudaMallocHost memory, which kernels may read too

char *body_of(const allocation &a) { return a.map + page_bytes; }
size_t body_bytes_of(const allocation &a) { return a.map_bytes - 2 * page_bytes; }

// the allocation whose mapping holds p, or NULL
const allocation *mapping_of(const void *p) {
    auto it = allocations.upper_bound((uintptr_t)p + page_bytes * 2 + ALLOCATION_ALIGNMENT);
    while (it != allocations.begin()) {
        --it;
        const allocation &a = it->second;
        if ((uintptr_t)p >= (uintptr_t)a.map && (uintptr_t)p < (uintptr_t)a.map + a.map_bytes) return &a;
        if ((uintptr_t)a.map + a.map_bytes <= (uintptr_t)p) break;
    }
    return nullptr;
}

// the allocation whose data [data, data + bytes] (its end included) holds p, or NULL
const allocation *allocation_of(const void *p) {
    auto it = allocations.upper_bound((uintptr_t)p);
    if (it == allocations.begin()) return nullptr;
    --it;
    return (uintptr_t)p <= (uintptr_t)it->second.data + it->second.bytes ? &it->second : nullptr;
}

bool is_pinned(const void *p, size_t bytes) {
    auto it = pinned.upper_bound((uintptr_t)p);
    if (it == pinned.begin()) return false;
    --it;
    return (uintptr_t)p + bytes <= it->first + it->second;
}

enum memory_kind { MEMORY_DEVICE, MEMORY_PARTLY_DEVICE, MEMORY_FREED, MEMORY_HOST };

memory_kind kind_of(const void *p, size_t bytes) {
    const allocation *a = allocation_of(p);
    if (a == nullptr) return MEMORY_HOST;
    if (a->freed) return MEMORY_FREED;
    return (uintptr_t)p + bytes <= (uintptr_t)a->data + a->bytes ? MEMORY_DEVICE : MEMORY_PARTLY_DEVICE;
}

const char *kind_name(memory_kind k) {
    switch (k) {
    case MEMORY_DEVICE:
        return "device memory";
    case MEMORY_PARTLY_DEVICE:
        return "past the end of its device allocation";
    case MEMORY_FREED:
        return "freed device memory";
    default:
        return "not device memory";
    }
}

bool all_bytes_ff(const char *p, size_t n) {
    static char ff[4096];
    if (ff[0] == 0) memset(ff, 0xff, sizeof ff);
    for (size_t done = 0; done < n;) {
        size_t chunk = std::min(n - done, sizeof ff);
        if (memcmp(p + done, ff, chunk) != 0) return false;
        done += chunk;
    }
    return true;
}

// ---- fibers ----

void *scheduler_sp;
[[maybe_unused]] const void *scheduler_stack_bottom; // AddressSanitizer's view of the scheduler's stack
[[maybe_unused]] size_t scheduler_stack_size;
[[maybe_unused]] void *scheduler_fake_stack;
std::vector<char *> free_stacks;
std::vector<char *> all_stacks; // for reports of a stack overflow

struct block_state {
    int nthreads = 0, nwarps = 0, live = 0, exited = 0;
    barrier block;
    barrier warps[MAX_THREADS / WARP];
    int block_waiting[MAX_THREADS], warp_waiting[MAX_THREADS / WARP][WARP];
    unsigned ready_lanes[MAX_THREADS / WARP]; // per warp, its lanes that can go on
    uint32_t ready_warps = 0;                 // the warps with lanes that can go on
    bool reverse = false;                     // warps and lanes run from the highest down
    unsigned warp_lanes[MAX_THREADS / WARP];  // the lanes each warp has
    unsigned warp_exited[MAX_THREADS / WARP]; // its lanes that exited
    uint64_t slots[MAX_THREADS / WARP][2][WARP];
    std::vector<std::pair<void *, size_t>> statics; // __shared__ arrays seen in this block
    size_t static_bytes = 0;
};

std::vector<fiber> fibers(MAX_THREADS);
block_state blk;
char *dynamic_region; // OPTIN_SHARED_LIMIT bytes followed by an inaccessible page
char *dynamic_shared; // this launch's dynamic shared memory: the region's last bytes
std::map<const void *, size_t> dynamic_shared_limit; // per kernel, from cudaFuncSetAttribute

char *acquire_stack() {
    if (!free_stacks.empty()) {
        char *s = free_stacks.back();
        free_stacks.pop_back();
        return s;
    }
    char *map = (char *)mmap(nullptr, stack_bytes + page_bytes, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) emu_fail("no memory for a thread's stack");
    mprotect(map, page_bytes, PROT_NONE); // the stack grows down onto this page when it overflows
    all_stacks.push_back(map);
    return map + page_bytes;
}

// where a thread's stack starts: stacks lie at multiples of the page size, so their tops would all fall
// in the same sets of the caches; each starts a few cache lines further down than the one made before
char *stack_top(const char *stack) {
    return (char *)stack + stack_bytes - ((uintptr_t)stack / 4096 * 448) % STACK_COLOURING;
}

void switch_to_scheduler(fiber &f) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&f.fake_stack, scheduler_stack_bottom, scheduler_stack_size);
#endif
    emu_switch(&f.sp, scheduler_sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &scheduler_stack_bottom, &scheduler_stack_size);
#endif
}

void thread_exited(fiber &f) {
    if (blk.block.arrived > 0)
        emu_fail("the thread exits while %d threads of its block wait at __syncthreads", blk.block.arrived);
    barrier &w = blk.warps[f.warp];
    if (w.arrived > 0 && (w.mask >> f.lane & 1u))
        emu_fail("lane %d exits while %d lanes of its warp wait for it at %s (mask 0x%08x)", f.lane,
                 w.arrived, w.what, w.mask);
    blk.warp_exited[f.warp] |= 1u << f.lane;
    blk.exited++;
    blk.live--;
}

[[noreturn]] void fiber_entry() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom, &scheduler_stack_size);
#endif
    launch->body(launch->context);
    fiber &f = *current;
    thread_exited(f);
    f.state = FIBER_DONE;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, scheduler_stack_bottom, scheduler_stack_size);
#endif
    void *unused;
    emu_switch(&unused, scheduler_sp);
    __builtin_unreachable();
}

void start(fiber &f) {
    f.stack = acquire_stack();
#if EMU_ASAN
    __asan_unpoison_memory_region(f.stack, stack_bytes); // frames left by the fibers that used it before
#endif
    void **top = (void **)((uintptr_t)stack_top(f.stack) & ~(uintptr_t)15);
    top[-1] = nullptr;             // fiber_entry's return address: it never returns
    top[-2] = (void *)fiber_entry; // where emu_switch returns to
    for (int r = 3; r <= 8; r++)   // rbp, rbx, r12-r15
        top[-r] = nullptr;
    f.sp = (void *)(top - 8);
    f.state = FIBER_RUNNING;
}

void resume(fiber &f) {
    current = &f;
    threadIdx = f.tid;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, f.stack, stack_bytes);
#endif
    emu_switch(&scheduler_sp, f.sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
    current = nullptr;
}

void make_ready(int index) {
    blk.ready_lanes[index / WARP] |= 1u << (index % WARP);
    blk.ready_warps |= 1u << (index / WARP);
}

// the next thread to run, -1 when none can: the first ready lane of the first warp with one, so that a
// warp runs as far as it can (to a __syncthreads) before the next warp starts
int next_ready() {
    if (blk.ready_warps == 0) return -1;
    const int w = blk.reverse ? 31 - __builtin_clz(blk.ready_warps) : __builtin_ctz(blk.ready_warps);
    unsigned &lanes = blk.ready_lanes[w];
    const int lane = blk.reverse ? 31 - __builtin_clz(lanes) : __builtin_ctz(lanes);
    lanes &= ~(1u << lane);
    if (lanes == 0) blk.ready_warps &= ~(1u << w);
    return w * WARP + lane;
}

// the running thread arrives at b: the last expected one goes on at once and the others become ready;
// the others wait
void arrive(fiber &f, barrier &b) {
    if (++b.arrived == b.expected) {
        for (int i = 0; i < b.arrived - 1; i++)
            make_ready(b.waiting[i]);
        b.arrived = 0;
        b.generation++;
        return;
    }
    b.waiting[b.arrived - 1] = f.index;
    f.state = FIBER_WAITING;
    switch_to_scheduler(f);
    f.state = FIBER_RUNNING;
}

fiber &running(const char *what) {
    if (current == nullptr) emu_fail("%s called outside a kernel", what);
    return *current;
}

[[noreturn]] void report_deadlock() {
    char waits[2048];
    int n = snprintf(waits, sizeof waits, "%d of %d threads wait at __syncthreads", blk.block.arrived,
                     blk.nthreads);
    for (int w = 0; w < blk.nwarps && n < (int)sizeof waits - 100; w++)
        if (blk.warps[w].arrived > 0)
            n += snprintf(waits + n, sizeof waits - n, "; warp %d: %d lanes at %s (mask 0x%08x)", w,
                          blk.warps[w].arrived, blk.warps[w].what, blk.warps[w].mask);
    emu_fail("deadlock in block (%u,%u,%u): no thread can go on (%s; %d exited)", blockIdx.x, blockIdx.y,
             blockIdx.z, waits, blk.exited);
}

void run_block(uint3 b, bool reverse) {
    const int n = blk.nthreads;
    blockIdx = b;
    blk.live = n;
    blk.exited = 0;
    blk.block = barrier();
    blk.block.expected = n;
    blk.block.waiting = blk.block_waiting;
    for (int w = 0; w < blk.nwarps; w++) {
        blk.warps[w] = barrier();
        blk.warps[w].waiting = blk.warp_waiting[w];
        blk.warp_exited[w] = 0;
        int lanes = std::min(WARP, n - w * WARP);
        blk.warp_lanes[w] = lanes == WARP ? 0xffffffffu : (1u << lanes) - 1u;
    }
    blk.statics.clear();
    blk.static_bytes = 0;
    if (launch->smem > 0) memset(dynamic_shared, 0xff, launch->smem);
    const dim3 bd = launch->block;
    for (int i = 0; i < n; i++) {
        fiber &f = fibers[i];
        f.tid = {i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
        f.index = i;
        f.warp = i / WARP;
        f.lane = i % WARP;
        f.state = FIBER_NEW;
        f.stack = nullptr;
    }
    blk.reverse = reverse;
    blk.ready_warps = 0;
    for (int i = 0; i < n; i++)
        make_ready(i);
    for (int i = next_ready(); i >= 0; i = next_ready()) {
        fiber &f = fibers[i];
        if (f.state == FIBER_NEW) start(f);
        resume(f);
        if (f.state == FIBER_DONE) {
            free_stacks.push_back(f.stack); // reused by the next thread to start
            f.stack = nullptr;
        }
    }
    if (blk.live > 0) report_deadlock();
}

// the launch's error (printed, and what cudaGetLastError then returns), or cudaSuccess
cudaError_t launch_error(const emu_launch_config &c) {
    const dim3 g = c.grid, b = c.block;
    if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        emu_error("launch of %s with grid (%u, %u, %u): each of x, y, z must be at least 1 and at most "
                  "2^31 - 1, 65535, 65535",
                  c.name, g.x, g.y, g.z);
        return cudaErrorInvalidConfiguration;
    }
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 || threads > MAX_THREADS) {
        emu_error("launch of %s with block (%u, %u, %u): at most (1024, 1024, 64) and 1024 threads", c.name,
                  b.x, b.y, b.z);
        return cudaErrorInvalidConfiguration;
    }
    auto raised = dynamic_shared_limit.find(c.kernel);
    const size_t limit = raised != dynamic_shared_limit.end() ? raised->second : DEFAULT_DYNAMIC_SHARED_LIMIT;
    if (c.smem > limit) {
        emu_error(
            "launch of %s with %zu bytes of dynamic shared memory: its limit is %zu (cudaFuncSetAttribute "
            "raises it to at most %zu)",
            c.name, c.smem, limit, OPTIN_SHARED_LIMIT);
        return cudaErrorInvalidValue;
    }
    if (c.param_bytes > PARAM_LIMIT) {
        emu_error("launch of %s with %zu bytes of parameters (at most %zu)", c.name, c.param_bytes,
                  PARAM_LIMIT);
        return cudaErrorInvalidValue;
    }
    if (!emu_valid_stream(c.stream)) {
        emu_error("launch of %s on stream %p, which is not a live stream", c.name, (void *)c.stream);
        return cudaErrorInvalidResourceHandle;
    }
    if (!emu_stream_on_current_device(c.stream, c.name)) return cudaErrorInvalidResourceHandle;
    if ((uint64_t)g.x * g.y * g.z > MAX_BLOCKS)
        emu_fail("launch of %s with %llu blocks: too many to emulate", c.name,
                 (unsigned long long)g.x * g.y * g.z);
    return cudaSuccess;
}

// warp w's lanes meet in operation what with mask, each leaving value in the meeting's slot;
// returns the slot parity of the meeting
int warp_meet(fiber &f, const char *what, unsigned mask, uint64_t value) {
    const int w = f.warp;
    barrier &b = blk.warps[w];
    if ((mask & ~blk.warp_lanes[w]) != 0)
        emu_fail("%s with mask 0x%08x in warp %d, which has lanes 0x%08x only", what, mask, w,
                 blk.warp_lanes[w]);
    if (!(mask >> f.lane & 1u))
        emu_fail("%s by lane %d, which its mask 0x%08x leaves out", what, f.lane, mask);
    if ((mask & blk.warp_exited[w]) != 0)
        emu_fail("%s with mask 0x%08x, but lanes 0x%08x of the warp have exited", what, mask,
                 mask & blk.warp_exited[w]);
    if (b.arrived == 0) {
        b.mask = mask;
        b.what = what;
        b.expected = __builtin_popcount(mask);
    } else if (b.mask != mask || (b.what != what && strcmp(b.what, what) != 0)) {
        emu_fail(
            "lanes of warp %d meet at %s (mask 0x%08x) and at %s (mask 0x%08x): divergent warp operations", w,
            b.what, b.mask, what, mask);
    }
    const int parity = (int)(b.generation & 1);
    blk.slots[w][parity][f.lane] = value;
    arrive(f, b);
    return parity;
}

const char *error_name(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
        return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
        return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
        return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction:
        return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice:
        return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
        return "cudaErrorInvalidDevice";
    case cudaErrorNoKernelImageForDevice:
        return "cudaErrorNoKernelImageForDevice";
    case cudaErrorInvalidResourceHandle:
        return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress:
        return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
        return "cudaErrorLaunchOutOfResources";
    case cudaErrorMisalignedAddress:
        return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure:
        return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported:
        return "cudaErrorNotSupported";
    case cudaErrorIllegalState:
        return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported:
        return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
        return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched:
        return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit:
        return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread:
        return "cudaErrorStreamCaptureWrongThread";
    default:
        return "cudaErrorUnknown";
    }
}

// ---- faults ----

void on_fault(int sig, siginfo_t *info, void *) {
    const uintptr_t at = (uintptr_t)info->si_addr;
    char where[256];
    const allocation *a = mapping_of(info->si_addr);
    if (a != nullptr && a->freed)
        snprintf(where, sizeof where, "in freed device memory (a %zu-byte allocation)", a->bytes);
    else if (a != nullptr && at < (uintptr_t)a->data)
        snprintf(where, sizeof where, "%zu bytes before the start of a %zu-byte device allocation",
                 (size_t)((uintptr_t)a->data - at), a->bytes);
    else if (a != nullptr)
        snprintf(where, sizeof where, "%zu bytes past the end of a %zu-byte device allocation",
                 (size_t)(at - (uintptr_t)a->data - a->bytes), a->bytes);
    else if (dynamic_region && at >= (uintptr_t)dynamic_region + OPTIN_SHARED_LIMIT &&
             at < (uintptr_t)dynamic_region + OPTIN_SHARED_LIMIT + page_bytes)
        snprintf(where, sizeof where,
                 "%zu bytes past the end of the block's %zu bytes of dynamic shared memory",
                 (size_t)(at - (uintptr_t)dynamic_region - OPTIN_SHARED_LIMIT), launch ? launch->smem : 0);
    else {
        snprintf(where, sizeof where, "not device memory");
        for (char *s : all_stacks)
            if (at >= (uintptr_t)s && at < (uintptr_t)s + page_bytes)
                snprintf(where, sizeof where, "a thread's stack overflowed (%zu bytes)", stack_bytes);
    }
    char ctx[512];
    context(ctx, sizeof ctx);
    fflush(stdout);
    fprintf(stderr, "EMU FAIL: %s at address %p: %s%s\n",
            sig == SIGBUS ? "bus error" : "invalid memory access", info->si_addr, where, ctx);
    fflush(stderr);
    _exit(70);
}

void at_exit() {
    if (getenv("LF_EMU_STATS"))
        fprintf(stderr, "EMU: %ld launches (%ld of them in %ld graph launches), %zu allocations\n",
                launch_count, replayed_launch_count, graph_launch_count, allocations.size());
    if (error_count > 0) {
        fflush(stdout);
        fprintf(stderr, "EMU: %ld errors: exit status 71\n", error_count);
        fflush(stderr);
        _exit(71);
    }
}

__attribute__((constructor)) void init() {
    page_bytes = (size_t)sysconf(_SC_PAGESIZE);
    stack_bytes = EMU_ASAN ? 1024 * 1024 : 384 * 1024;
    profile = getenv("LF_EMU_PROFILE") != nullptr;
    const char *seed = getenv("LF_EMU_SEED");
    rng.seed(seed ? strtoull(seed, nullptr, 10) : 12345);
    size_t region = (OPTIN_SHARED_LIMIT + page_bytes - 1) / page_bytes * page_bytes;
    char *map = (char *)mmap(nullptr, region + page_bytes, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) abort();
    mprotect(map + region, page_bytes, PROT_NONE);
    dynamic_region = map + region - OPTIN_SHARED_LIMIT;
    static char alternate_stack[256 * 1024];
    stack_t ss = {};
    ss.ss_sp = alternate_stack;
    ss.ss_size = sizeof alternate_stack;
    sigaltstack(&ss, nullptr);
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    atexit(at_exit);
}

// ---- streams and their capture ----

std::map<cudaStream_t, unsigned> streams; // those of cudaStreamCreate* alive, with their flags

// what a graph node is: a kernel, a memset, a copy, a library call (cuBLASLt's matmul, one node here; a
// real cuBLASLt algorithm may be two kernels)
enum graph_node_kind { NODE_KERNEL, NODE_MEMSET, NODE_COPY, NODE_LIBRARY, GRAPH_NODE_KINDS };

// a capture of a stream: what it recorded, run again at each replay of its graph
struct capture {
    cudaStreamCaptureMode mode;
    std::thread::id thread; // the thread that began it
    bool invalidated = false;
    std::vector<emu_graph_work> nodes;
    long long nodes_of_kind[GRAPH_NODE_KINDS] = {}; // how many of nodes are of each graph_node_kind
};
long long last_graph_nodes[GRAPH_NODE_KINDS]; // nodes_of_kind of the last graph a capture made
std::map<cudaStream_t, capture> captures;     // by stream
std::set<cudaGraph_t> graphs;                 // every graph made (a destroyed one stays, marked)
std::set<cudaGraphExec_t> execs;              // every instantiation made (likewise)

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

// a blocking stream (cudaStreamPerThread too) waits for the legacy stream, and the legacy stream for it
bool is_blocking(cudaStream_t s) {
    auto it = streams.find(s);
    return it == streams.end() || (it->second & cudaStreamNonBlocking) == 0;
}

const char *mode_name(cudaStreamCaptureMode mode) {
    return mode == cudaStreamCaptureModeGlobal        ? "global"
           : mode == cudaStreamCaptureModeThreadLocal ? "thread-local"
                                                      : "relaxed";
}

// api's misuse (why) of the capture of stream c: reported, the capture invalidated; returns e
cudaError_t invalidate(const char *api, cudaStream_t stream, capture &c, const char *why, cudaError_t e) {
    emu_error("%s %s: %s; the capture of stream %p is invalidated", api, why, error_name(e), (void *)stream);
    c.invalidated = true;
    return record(e);
}

// api uses the legacy stream: an error while blocking streams capture (it would wait for their
// work, which is not run), which invalidates their captures
cudaError_t use_legacy_stream(const char *api) {
    cudaError_t e = cudaSuccess;
    for (auto &[stream, c] : captures)
        if (is_blocking(stream))
            e = invalidate(api, stream, c, "on the legacy stream while a blocking stream captures",
                           cudaErrorStreamCaptureImplicit);
    return e;
}

// api is a call that is not enqueued on a stream, which a capture in the global mode prohibits in every
// thread, one in the thread-local mode in its own (cudaMalloc, cudaFree, synchronous copies): an error
// that invalidates those captures
cudaError_t unsafe_during_capture(const char *api) {
    cudaError_t e = cudaSuccess;
    char why[96];
    for (auto &[stream, c] : captures)
        if (c.mode == cudaStreamCaptureModeGlobal ||
            (c.mode == cudaStreamCaptureModeThreadLocal && c.thread == std::this_thread::get_id())) {
            snprintf(why, sizeof why, "while a stream captures in the %s mode", mode_name(c.mode));
            e = invalidate(api, stream, c, why, cudaErrorStreamCaptureUnsupported);
        }
    return e;
}

// a synchronous call (on the legacy stream, and prohibited by captures not in the relaxed mode)
cudaError_t synchronous_call(const char *api) {
    const cudaError_t e = use_legacy_stream(api);
    return e != cudaSuccess ? e : unsafe_during_capture(api);
}

// where work that api enqueues on stream goes: *into, the capture recording it, or NULL to run it now;
// an error when the stream's capture is invalidated, or the legacy stream may not be used
cudaError_t enqueue(const char *api, cudaStream_t stream, capture **into) {
    *into = nullptr;
    if (!emu_valid_stream(stream)) {
        emu_error("%s on stream %p, which is not a live stream", api, (void *)stream);
        return record(cudaErrorInvalidResourceHandle);
    }
    if (is_legacy(stream)) return use_legacy_stream(api);
    auto it = captures.find(stream);
    if (it == captures.end()) return cudaSuccess;
    if (it->second.invalidated) {
        emu_error("%s on stream %p, whose capture is invalidated", api, (void *)stream);
        return record(cudaErrorStreamCaptureInvalidated);
    }
    *into = &it->second;
    return cudaSuccess;
}

// ---- copies and memsets: run now, or recorded by a capturing stream ----

// the error (reported) of a copy, or cudaSuccess
cudaError_t copy_error(const char *api, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) {
        emu_error("%s of %zu bytes with a NULL pointer", api, bytes);
        return cudaErrorInvalidValue;
    }
    const memory_kind d = kind_of(dst, bytes), s = kind_of(src, bytes);
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
        emu_error("%s with kind %d", api, (int)kind);
        return cudaErrorInvalidMemcpyDirection;
    }
    if (d == MEMORY_PARTLY_DEVICE || d == MEMORY_FREED || s == MEMORY_PARTLY_DEVICE || s == MEMORY_FREED ||
        (kind != cudaMemcpyDefault &&
         (dst_device != (d == MEMORY_DEVICE) || src_device != (s == MEMORY_DEVICE)))) {
        emu_error("%s of %zu bytes (kind %d) to %p (%s) from %p (%s)", api, bytes, (int)kind, dst,
                  kind_name(d), src, kind_name(s));
        return cudaErrorInvalidValue;
    }
    if ((char *)dst < (const char *)src + bytes && (const char *)src < (char *)dst + bytes) {
        emu_error("%s of %zu bytes between overlapping ranges", api, bytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t run_copy(const char *api, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    const cudaError_t e = copy_error(api, dst, src, bytes, kind);
    if (e != cudaSuccess) return record(e);
    if (bytes > 0) memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t set_error(const char *api, void *p, size_t bytes) {
    const memory_kind k = kind_of(p, bytes);
    if (bytes == 0 || k == MEMORY_DEVICE) return cudaSuccess;
    emu_error("%s of %zu bytes at %p: %s", api, bytes, p, kind_name(k));
    return cudaErrorInvalidValue;
}

cudaError_t run_set(const char *api, void *p, int value, size_t bytes) {
    const cudaError_t e = set_error(api, p, bytes);
    if (e != cudaSuccess) return record(e);
    if (bytes > 0) memset(p, value, bytes);
    return cudaSuccess;
}

// an asynchronous copy on stream; a capture records it with its host memory, which must be pinned then
cudaError_t copy_async(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    const char *api = "cudaMemcpyAsync";
    capture *into;
    cudaError_t e = enqueue(api, stream, &into);
    if (e != cudaSuccess) return e;
    if (into == nullptr) return run_copy(api, dst, src, bytes, kind);
    e = copy_error(api, dst, src, bytes, kind);
    if (e != cudaSuccess) return invalidate(api, stream, *into, "with invalid arguments", e);
    const bool pageable = bytes > 0 && ((kind_of(dst, bytes) == MEMORY_HOST && !is_pinned(dst, bytes)) ||
                                        (kind_of(src, bytes) == MEMORY_HOST && !is_pinned(src, bytes)));
    if (pageable)
        return invalidate(api, stream, *into, "of pageable host memory (not of cudaMallocHost)",
                          cudaErrorStreamCaptureUnsupported);
    into->nodes.push_back([=](cudaStream_t) { return run_copy(api, dst, src, bytes, kind); });
    into->nodes_of_kind[NODE_COPY]++;
    return cudaSuccess;
}

cudaError_t set_async(void *p, int value, size_t bytes, cudaStream_t stream) {
    const char *api = "cudaMemsetAsync";
    capture *into;
    cudaError_t e = enqueue(api, stream, &into);
    if (e != cudaSuccess) return e;
    if (into == nullptr) return run_set(api, p, value, bytes);
    e = set_error(api, p, bytes);
    if (e != cudaSuccess) return invalidate(api, stream, *into, "with invalid arguments", e);
    into->nodes.push_back([=](cudaStream_t) { return run_set(api, p, value, bytes); });
    into->nodes_of_kind[NODE_MEMSET]++;
    return cudaSuccess;
}

} // namespace

// ---- what cublaslt.cpp uses ----

void emu_error(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    report("EMU ERROR", fmt, args);
    va_end(args);
    error_count++;
}

void emu_fail(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    report("EMU FAIL", fmt, args);
    va_end(args);
    _exit(70);
}

bool emu_device_range(const char *what, const void *p, size_t bytes) {
    const memory_kind k = kind_of(p, bytes);
    if (k == MEMORY_DEVICE) return true;
    emu_error("%s: %zu bytes at %p are %s", what, bytes, p, kind_name(k));
    return false;
}

bool emu_is_device_pointer(const void *p) { return kind_of(p, 0) == MEMORY_DEVICE; }

void emu_check_allocation_bounds(const char *writer) {
    for (auto &entry : allocations) {
        allocation &a = entry.second;
        if (a.freed) continue;
        char *body = body_of(a), *end = a.data + a.bytes;
        const size_t head = (size_t)(a.data - body), tail = (size_t)(body + body_bytes_of(a) - end);
        if (!all_bytes_ff(body, head)) {
            size_t first = 0;
            while ((unsigned char)body[first] == 0xff)
                first++;
            emu_error("%s wrote before the start of a %zu-byte device allocation (from %zu bytes before it)",
                      writer, a.bytes, head - first);
            memset(body, 0xff, head);
        }
        if (!all_bytes_ff(end, tail)) {
            size_t last = tail;
            while ((unsigned char)end[last - 1] == 0xff)
                last--;
            emu_error("%s wrote past the end of a %zu-byte device allocation (up to %zu bytes past it)",
                      writer, a.bytes, last);
            memset(end, 0xff, tail);
        }
    }
}

bool emu_valid_stream(cudaStream_t stream) {
    return stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread ||
           streams.count(stream) > 0;
}

void emu_set_library_call(const char *name) { library_call = name; }

// ---- kernels ----

bool emu_check_kernel_pointer(const char *kernel, int index, const void *p) {
    if (p == nullptr || kind_of(p, 0) == MEMORY_DEVICE || is_pinned(p, 0)) return true;
    emu_error("launch of %s: argument %d (%p) is %s", kernel, index, p, kind_name(kind_of(p, 0)));
    record(cudaErrorIllegalAddress);
    return false;
}

namespace {

// runs every block of the launch c (checked)
void run_grid(const emu_launch_config &c) {
    timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    launch = &c;
    blockDim = c.block;
    gridDim = c.grid;
    blk.nthreads = (int)(c.block.x * c.block.y * c.block.z);
    blk.nwarps = (blk.nthreads + WARP - 1) / WARP;
    dynamic_shared = dynamic_region + OPTIN_SHARED_LIMIT - (c.smem + 15) / 16 * 16;
    const uint64_t gx = c.grid.x, gy = c.grid.y, nblocks = gx * gy * c.grid.z;
    std::vector<uint64_t> order(nblocks);
    for (uint64_t i = 0; i < nblocks; i++)
        order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (uint64_t i : order)
        run_block({(unsigned)(i % gx), (unsigned)(i / gx % gy), (unsigned)(i / (gx * gy))}, rng() & 1);
    blockIdx = threadIdx = {0, 0, 0};
    blockDim = gridDim = dim3(0, 0, 0);
    emu_check_allocation_bounds("the kernel");
    launch = nullptr;
    launch_count++;
    if (profile) {
        timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        fprintf(stderr, "EMU: %8.1f ms %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n",
                (now.tv_sec - started.tv_sec) * 1e3 + (now.tv_nsec - started.tv_nsec) * 1e-6, c.name,
                c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.smem);
    }
}

// the launch c recorded: its parameters copied, checked again and run on the replay's stream
emu_graph_work kernel_node(const emu_launch_config &c) {
    std::shared_ptr<void> params(c.copy(c.context), c.destroy);
    return [c, params](cudaStream_t stream) {
        emu_launch_config replay = c;
        replay.context = params.get(), replay.stream = stream;
        if (!replay.check_pointers(replay.name, replay.context)) return cudaErrorIllegalAddress;
        const cudaError_t e = launch_error(replay);
        if (e != cudaSuccess) return record(e);
        run_grid(replay);
        replayed_launch_count++;
        return cudaSuccess;
    };
}

} // namespace

void emu_run_kernel(const emu_launch_config &c) {
    if (current != nullptr)
        emu_fail("a launch of %s from a kernel (dynamic parallelism is not emulated)", c.name);
    if (!c.check_pointers(c.name, c.context)) return;
    char what[160];
    snprintf(what, sizeof what, "launch of %s", c.name);
    capture *into = nullptr;
    const cudaError_t e = launch_error(c);
    if (e != cudaSuccess) {
        record(e);
        auto it = captures.find(c.stream); // an invalid launch invalidates the capture
        if (it != captures.end() && !it->second.invalidated)
            invalidate(what, c.stream, it->second, "with an invalid configuration", e);
        return;
    }
    if (enqueue(what, c.stream, &into) != cudaSuccess) return;
    if (into != nullptr) {
        into->nodes.push_back(kernel_node(c));
        into->nodes_of_kind[NODE_KERNEL]++;
    } else {
        run_grid(c);
    }
}

cudaError_t emu_enqueue(const char *api, cudaStream_t stream, emu_graph_work work) {
    capture *into;
    const cudaError_t e = enqueue(api, stream, &into);
    if (e != cudaSuccess) return e;
    if (into == nullptr) return work(stream);
    into->nodes.push_back(std::move(work));
    into->nodes_of_kind[NODE_LIBRARY]++;
    return cudaSuccess;
}

cudaError_t emu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
        emu_error("cudaFuncSetAttribute: attribute %d is not emulated", (int)attr);
        return record(cudaErrorInvalidValue);
    }
    if (value < 0 || (size_t)value > OPTIN_SHARED_LIMIT) {
        emu_error("cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %zu on sm_86 and sm_89)",
                  value, OPTIN_SHARED_LIMIT);
        return record(cudaErrorInvalidValue);
    }
    dynamic_shared_limit[func] = (size_t)value;
    return cudaSuccess;
}

void *emu_dynamic_shared(void) {
    running("extern __shared__");
    return dynamic_shared;
}

bool emu_shared_array(void *array, size_t bytes) {
    running("__shared__");
    for (const auto &s : blk.statics)
        if (s.first == array) return true;
    blk.statics.push_back({array, bytes});
    blk.static_bytes += bytes;
    if (blk.static_bytes > STATIC_SHARED_LIMIT)
        emu_fail("%zu bytes of static __shared__ memory (at most %zu)", blk.static_bytes,
                 STATIC_SHARED_LIMIT);
    if (blk.static_bytes + launch->smem > OPTIN_SHARED_LIMIT)
        emu_fail("%zu bytes of static and %zu of dynamic shared memory (at most %zu together)",
                 blk.static_bytes, launch->smem, OPTIN_SHARED_LIMIT);
    memset(array, 0xff, bytes);
    return true;
}

void __syncthreads(void) {
    fiber &f = running("__syncthreads");
    if (blk.exited > 0)
        emu_fail("__syncthreads after %d threads of the block exited (they never arrive)", blk.exited);
    arrive(f, blk.block);
}

void __syncwarp(unsigned mask) { warp_meet(running("__syncwarp"), "__syncwarp", mask, 0); }

uint64_t emu_warp_exchange(const char *what, emu_warp_kind kind, unsigned mask, uint64_t value, int arg,
                           int width) {
    fiber &f = running(what);
    if (width < 1 || width > WARP || (width & (width - 1)) != 0)
        emu_fail("%s with width %d (a power of 2 up to 32)", what, width);
    const int parity = warp_meet(f, what, mask, value);
    const int lane = f.lane, first = lane & ~(width - 1);
    int src = lane;
    switch (kind) {
    case EMU_SHFL_IDX:
        src = first + (arg & (width - 1));
        break;
    case EMU_SHFL_UP:
        src = lane - arg >= first ? lane - arg : lane;
        break;
    case EMU_SHFL_DOWN:
        src = lane + arg < first + width ? lane + arg : lane;
        break;
    case EMU_SHFL_XOR:
        src = (lane ^ arg) < first + width ? lane ^ arg : lane;
        break;
    default:
        emu_fail("%s: unknown shuffle", what);
    }
    if (!(mask >> src & 1u))
        emu_fail("%s by lane %d reads lane %d, which the mask 0x%08x leaves out", what, lane, src, mask);
    return blk.slots[f.warp][parity][src];
}

unsigned emu_warp_vote(const char *what, unsigned mask, int predicate) {
    fiber &f = running(what);
    const int parity = warp_meet(f, what, mask, predicate != 0);
    unsigned ballot = 0;
    for (int l = 0; l < WARP; l++)
        if ((mask >> l & 1u) && blk.slots[f.warp][parity][l]) ballot |= 1u << l;
    return ballot;
}

unsigned __activemask(void) {
    fiber &f = running("__activemask");
    return blk.warp_lanes[f.warp] & ~blk.warp_exited[f.warp];
}

// ---- runtime API ----

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }
const char *cudaGetErrorName(cudaError_t e) { return error_name(e); }
const char *cudaGetErrorString(cudaError_t e) {
    static char text[96];
    snprintf(text, sizeof text, "%s (emulated, code %d)", error_name(e), (int)e);
    return text;
}

// Devices: LF_EMU_DEVICE_COUNT of them (1 to 64, default 1), all of the same memory; the current
// device is per host thread (0 until cudaSetDevice), and a stream belongs to the device current when it
// was made: a launch on it from a thread whose current device is another fails, as CUDA's does.
static thread_local int current_device = 0;
static std::map<cudaStream_t, int> stream_device;

static int emulated_device_count(void) {
    const char *env = getenv("LF_EMU_DEVICE_COUNT");
    int n = env ? atoi(env) : 1;
    return n >= 1 && n <= 64 ? n : 1;
}

bool emu_stream_on_current_device(cudaStream_t stream, const char *what) {
    auto it = stream_device.find(stream);
    if (it == stream_device.end() || it->second == current_device) return true;
    emu_error("%s on a stream of device %d from a thread whose current device is %d (cudaSetDevice missing)",
              what, it->second, current_device);
    return false;
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = emulated_device_count();
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    *device = current_device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= emulated_device_count()) return record(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device < 0 || device >= emulated_device_count()) return record(cudaErrorInvalidDevice);
    *prop = cudaDeviceProp();
    snprintf(prop->name, sizeof prop->name, "lorafast CUDA emulator (limits of sm_86)");
    prop->totalGlobalMem = (size_t)24 << 30;
    prop->sharedMemPerBlock = STATIC_SHARED_LIMIT;
    prop->sharedMemPerBlockOptin = OPTIN_SHARED_LIMIT;
    prop->sharedMemPerMultiprocessor = 100 * 1024;
    prop->regsPerBlock = 65536;
    prop->warpSize = WARP;
    prop->maxThreadsPerBlock = MAX_THREADS;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->major = 8;
    prop->minor = 6;
    prop->multiProcessorCount = 16;
    prop->maxThreadsPerMultiProcessor = 1536;
    prop->l2CacheSize = 4 << 20;
    prop->clockRate = 1000000;
    return cudaSuccess;
}

// it would wait for the work of every stream, which a capturing one has not enqueued: invalid in every mode
cudaError_t cudaDeviceSynchronize(void) {
    cudaError_t e = cudaSuccess;
    for (auto &[stream, c] : captures)
        e = invalidate("cudaDeviceSynchronize", stream, c, "while a stream captures",
                       cudaErrorStreamCaptureUnsupported);
    return e;
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    if (const cudaError_t e = unsafe_during_capture("cudaMalloc")) return e;
    if (ptr == nullptr) return record(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    const size_t padded = (bytes + ALLOCATION_ALIGNMENT - 1) / ALLOCATION_ALIGNMENT * ALLOCATION_ALIGNMENT;
    const size_t body = (padded + page_bytes - 1) / page_bytes * page_bytes, total = body + 2 * page_bytes;
    char *map = (char *)mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return record(cudaErrorMemoryAllocation);
    if (mprotect(map + page_bytes, body, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, total);
        return record(cudaErrorMemoryAllocation);
    }
    memset(map + page_bytes, 0xff, body);
    char *data = map + page_bytes + body - padded;
    allocations[(uintptr_t)data] = {map, total, data, bytes, false};
    *ptr = data;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (const cudaError_t e = unsafe_during_capture("cudaFree")) return e;
    if (ptr == nullptr) return cudaSuccess;
    auto it = allocations.find((uintptr_t)ptr);
    if (it == allocations.end() || it->second.freed) {
        emu_error("cudaFree(%p): %s", ptr,
                  it == allocations.end() ? "not the start of a device allocation" : "freed already");
        return record(cudaErrorInvalidValue);
    }
    allocation &a = it->second;
    madvise(a.map, a.map_bytes, MADV_DONTNEED);
    mprotect(a.map, a.map_bytes, PROT_NONE); // never mapped again: a later use faults
    a.freed = true;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes) {
    if (const cudaError_t e = unsafe_during_capture("cudaMallocHost")) return e;
    if (ptr == nullptr) return record(cudaErrorInvalidValue);
    *ptr = malloc(bytes > 0 ? bytes : 1);
    if (*ptr == nullptr) return record(cudaErrorMemoryAllocation);
    pinned[(uintptr_t)*ptr] = bytes;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr) {
    if (const cudaError_t e = unsafe_during_capture("cudaFreeHost")) return e;
    if (ptr == nullptr) return cudaSuccess;
    if (pinned.erase((uintptr_t)ptr) == 0) {
        emu_error("cudaFreeHost(%p): not memory of cudaMallocHost", ptr);
        return record(cudaErrorInvalidValue);
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (const cudaError_t e = synchronous_call("cudaMemcpy")) return e;
    return run_copy("cudaMemcpy", dst, src, bytes, kind);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
    return copy_async(dst, src, bytes, kind, stream);
}
cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    if (const cudaError_t e = synchronous_call("cudaMemset")) return e;
    return run_set("cudaMemset", ptr, value, bytes);
}
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream) {
    return set_async(ptr, value, bytes, stream);
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = (size_t)20 << 30;
    *total_bytes = (size_t)24 << 30;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
    if (stream == nullptr || flags > cudaStreamNonBlocking) return record(cudaErrorInvalidValue);
    *stream = (cudaStream_t) new char[1];
    streams[*stream] = flags;
    stream_device[*stream] = current_device;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (stream == nullptr || streams.count(stream) == 0) {
        emu_error("cudaStreamDestroy(%p): not a live stream", (void *)stream);
        return record(cudaErrorInvalidResourceHandle);
    }
    auto it = captures.find(stream); // the stream stays, for cudaStreamEndCapture to end the capture
    if (it != captures.end())
        return invalidate("cudaStreamDestroy", stream, it->second, "of a capturing stream",
                          cudaErrorStreamCaptureUnsupported);
    streams.erase(stream);
    stream_device.erase(stream);
    delete[] (char *)stream;
    return cudaSuccess;
}
// work runs when it is enqueued: a live stream not capturing is always done, unless
// LF_EMU_STREAM_QUERY_BUSY=1 says its work never ends (a host's bounded wait on the device, tested)
cudaError_t cudaStreamQuery(cudaStream_t stream) {
    if (!emu_valid_stream(stream)) {
        emu_error("cudaStreamQuery(%p): not a live stream", (void *)stream);
        return record(cudaErrorInvalidResourceHandle);
    }
    if (captures.count(stream) > 0) return record(cudaErrorStreamCaptureUnsupported);
    return getenv("LF_EMU_STREAM_QUERY_BUSY") ? cudaErrorNotReady : cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (!emu_valid_stream(stream)) {
        emu_error("cudaStreamSynchronize(%p): not a live stream", (void *)stream);
        return record(cudaErrorInvalidResourceHandle);
    }
    if (is_legacy(stream)) return use_legacy_stream("cudaStreamSynchronize");
    auto it = captures.find(stream);
    if (it != captures.end())
        return invalidate("cudaStreamSynchronize", stream, it->second, "of a capturing stream",
                          cudaErrorStreamCaptureUnsupported);
    return cudaSuccess;
}

// ---- stream capture and graphs ----

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
    if (!emu_valid_stream(stream)) {
        emu_error("cudaStreamBeginCapture(%p): not a live stream", (void *)stream);
        return record(cudaErrorInvalidResourceHandle);
    }
    if (is_legacy(stream)) {
        emu_error("cudaStreamBeginCapture of the legacy stream: %s",
                  error_name(cudaErrorStreamCaptureUnsupported));
        return record(cudaErrorStreamCaptureUnsupported);
    }
    if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) {
        emu_error("cudaStreamBeginCapture with mode %d", (int)mode);
        return record(cudaErrorInvalidValue);
    }
    if (captures.count(stream) > 0) {
        emu_error("cudaStreamBeginCapture(%p): the stream is capturing already: %s", (void *)stream,
                  error_name(cudaErrorIllegalState));
        return record(cudaErrorIllegalState);
    }
    captures[stream] = capture{mode, std::this_thread::get_id(), false, {}};
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    if (graph == nullptr) {
        emu_error("cudaStreamEndCapture with a NULL graph pointer");
        return record(cudaErrorInvalidValue);
    }
    auto it = captures.find(stream);
    if (it == captures.end()) {
        emu_error("cudaStreamEndCapture(%p): the stream is not capturing: %s", (void *)stream,
                  error_name(cudaErrorIllegalState));
        return record(cudaErrorIllegalState);
    }
    capture &c = it->second;
    if (c.mode != cudaStreamCaptureModeRelaxed && c.thread != std::this_thread::get_id()) {
        emu_error("cudaStreamEndCapture(%p) from another thread than its cudaStreamBeginCapture (%s mode)",
                  (void *)stream, mode_name(c.mode));
        return record(cudaErrorStreamCaptureWrongThread);
    }
    *graph = nullptr;
    if (c.invalidated) {
        captures.erase(it);
        emu_error("cudaStreamEndCapture(%p): the capture was invalidated (reported above): no graph",
                  (void *)stream);
        return record(cudaErrorStreamCaptureInvalidated);
    }
    *graph = new CUgraph_st{std::move(c.nodes)};
    memcpy(last_graph_nodes, c.nodes_of_kind, sizeof last_graph_nodes);
    graphs.insert(*graph);
    captures.erase(it);
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status) {
    if (status == nullptr || !emu_valid_stream(stream)) {
        emu_error("cudaStreamIsCapturing(%p) of no live stream or with a NULL status", (void *)stream);
        return record(status == nullptr ? cudaErrorInvalidValue : cudaErrorInvalidResourceHandle);
    }
    *status = cudaStreamCaptureStatusNone;
    if (is_legacy(stream)) {
        for (const auto &entry : captures)
            if (is_blocking(entry.first)) { // the query is refused; the capture goes on
                emu_error("cudaStreamIsCapturing of the legacy stream while a blocking stream captures: %s",
                          error_name(cudaErrorStreamCaptureImplicit));
                return record(cudaErrorStreamCaptureImplicit);
            }
        return cudaSuccess;
    }
    auto it = captures.find(stream);
    if (it != captures.end())
        *status = it->second.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (exec == nullptr || graphs.count(graph) == 0 || graph->destroyed) {
        emu_error("cudaGraphInstantiate of %p: %s", (void *)graph,
                  exec == nullptr            ? "a NULL result pointer"
                  : graphs.count(graph) == 0 ? "not a graph of cudaStreamEndCapture"
                                             : "the graph was destroyed");
        return record(cudaErrorInvalidValue);
    }
    if (flags != 0) {
        emu_error("cudaGraphInstantiate with flags %llu (only 0 is emulated)", flags);
        return record(cudaErrorInvalidValue);
    }
    const char *refuse = getenv("LF_EMU_REFUSE_GRAPHS"); // a device that cannot run graphs, for tests
    if (refuse != nullptr && strcmp(refuse, "1") == 0) return record(cudaErrorNotSupported);
    *exec = new CUgraphExec_st{{graph->nodes}};
    execs.insert(*exec);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (execs.count(exec) == 0 || exec->destroyed) {
        emu_error("cudaGraphLaunch of %p: %s", (void *)exec,
                  execs.count(exec) == 0 ? "not a graph of cudaGraphInstantiate"
                                         : "used after cudaGraphExecDestroy");
        return record(execs.count(exec) == 0 ? cudaErrorInvalidValue : cudaErrorInvalidResourceHandle);
    }
    capture *into;
    if (const cudaError_t e = enqueue("cudaGraphLaunch", stream, &into)) return e;
    if (into != nullptr)
        return invalidate("cudaGraphLaunch", stream, *into, "on a capturing stream",
                          cudaErrorStreamCaptureUnsupported);
    graph_launch_count++;
    replaying = true;
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < exec->nodes.size() && e == cudaSuccess; i++) // the rest waits for a failed node
        e = exec->nodes[i](stream);
    replaying = false;
    return e;
}

namespace {

// api destroys g, a graph or an instantiation if made says so (maker makes them): its work goes, the
// handle stays, marked
cudaError_t destroy_graph(const char *api, CUgraph_st *g, bool made, const char *maker) {
    if (!made || g->destroyed) {
        emu_error("%s of %p: %s", api, (void *)g, !made ? maker : "destroyed already");
        return record(cudaErrorInvalidValue);
    }
    g->nodes.clear();
    g->destroyed = true;
    return cudaSuccess;
}

} // namespace

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    return destroy_graph("cudaGraphExecDestroy", exec, execs.count(exec) > 0,
                         "not a graph of cudaGraphInstantiate");
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    return destroy_graph("cudaGraphDestroy", graph, graphs.count(graph) > 0,
                         "not a graph of cudaStreamEndCapture");
}

// ---- the emulator's counts, for tests (ctypes) ----

extern "C" __attribute__((visibility("default"))) long long emu_kernel_launch_count(void) {
    return launch_count;
}
extern "C" __attribute__((visibility("default"))) long long emu_graph_launch_count(void) {
    return graph_launch_count;
}
extern "C" __attribute__((visibility("default"))) long long emu_direct_launch_count(void) {
    return launch_count - replayed_launch_count;
}
// the nodes of the last graph a capture made, of one kind: 0 kernels, 1 memsets, 2 copies, 3 library calls
extern "C" __attribute__((visibility("default"))) long long emu_last_graph_nodes(int kind) {
    return kind >= 0 && kind < GRAPH_NODE_KINDS ? last_graph_nodes[kind] : -1;
}

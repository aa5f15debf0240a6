// What the emulator's runtime (runtime.cpp) offers its cuBLASLt (cublaslt.cpp): reports and device
// memory bookkeeping.
#pragma once

#include <functional> // before cuda_runtime.h, whose __noinline__ libstdc++ spells its own way

#include <cuda_runtime.h>

// prints "EMU ERROR: ..." with where it happened; the program then exits non-zero at its end
void emu_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// prints "EMU FAIL: ..." with where it happened and exits at once
[[noreturn]] void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// 1 when [p, p + bytes) lies in one live device allocation; else reports what as an error and returns 0
bool emu_device_range(const char *what, const void *p, size_t bytes);
// 1 when p points into a live device allocation
bool emu_is_device_pointer(const void *p);
// reports writes outside the bounds of every live allocation (its padding changed) since the last check
void emu_check_allocation_bounds(const char *writer);
bool emu_valid_stream(cudaStream_t stream);
// false, reported as an error naming what, when stream belongs to another device than the calling thread's
// current one (LF_EMU_DEVICE_COUNT > 1)
bool emu_stream_on_current_device(cudaStream_t stream, const char *what);
// names the library call being emulated in reports (NULL when it returns)
void emu_set_library_call(const char *name);

// work recorded into a graph by a capturing stream; each replay runs it on the launch's stream and
// returns its error
using emu_graph_work = std::function<cudaError_t(cudaStream_t stream)>;
// work a library call enqueues on stream (api names it): run now, returning its error, or recorded when
// the stream captures; an error (reported) when the stream cannot take it: not a live stream, its
// capture invalidated, the legacy stream while a blocking stream captures
cudaError_t emu_enqueue(const char *api, cudaStream_t stream, emu_graph_work work);

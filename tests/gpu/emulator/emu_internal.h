// What the emulator's runtime (runtime.cpp) offers its cuBLASLt (cublaslt.cpp): reports and device
// memory bookkeeping.
#pragma once

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
// names the library call being emulated in reports (NULL when it returns)
void emu_set_library_call(const char *name);

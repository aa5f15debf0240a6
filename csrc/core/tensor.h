// Tensors of the C core: a dtype, a device, a shape and one contiguous block of storage.
// A tensor does not own its storage: it points into an arena (core/arena.h), a memory-mapped
// file (io/mapped_file.h) or a NumPy array; whoever made the storage frees it.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef enum lf_dtype {
    LF_F32 = 0,
    LF_F16 = 1,
    LF_BF16 = 2,
    LF_I32 = 3,
    LF_I64 = 4,
    LF_U8 = 5,
} lf_dtype;

#define LF_DTYPE_COUNT 6

typedef enum lf_device {
    LF_CPU = 0,
    LF_CUDA = 1,
} lf_device;

#define LF_MAX_DIMS 8

typedef struct lf_tensor {
    lf_dtype dtype;
    lf_device device;
    int ndim;                   // 0 for a scalar
    int64_t shape[LF_MAX_DIMS]; // shape[0..ndim)
    size_t numel;               // product of the shape (1 for a scalar)
    size_t nbytes;              // numel * lf_dtype_size(dtype)
    void *data;                 // contiguous, row-major; may be NULL when nbytes == 0
} lf_tensor;

// Bytes per element of dtype, or 0 for a value that is not an lf_dtype.
size_t lf_dtype_size(lf_dtype dtype);
// The dtype's name as NumPy spells it ("float32", "bfloat16", ...), or NULL.
const char *lf_dtype_name(lf_dtype dtype);
// Parses a NumPy-style name ("float32", "bfloat16", ...) into *dtype.
int lf_dtype_from_name(const char *name, lf_dtype *dtype);
// "cpu" or "cuda".
const char *lf_device_name(lf_device device);

// Checks dtype and shape (ndim in [0, LF_MAX_DIMS], no negative extent, no size overflow) and
// computes numel and nbytes into *count and *bytes. what names the tensor in the error message.
int lf_shape_size(const char *what, lf_dtype dtype, int ndim, const int64_t *shape, size_t *count,
                  size_t *bytes);
// Fills t's dtype, device, shape, numel and nbytes (validated as lf_shape_size) and sets data.
int lf_tensor_init(lf_tensor *t, const char *what, lf_dtype dtype, lf_device device, int ndim,
                   const int64_t *shape, void *data);

#include "core/tensor.h"

#include <string.h>

#include "core/error.h"

static const size_t dtype_sizes[LF_DTYPE_COUNT] = {4, 2, 2, 4, 8, 1};
static const char *const dtype_names[LF_DTYPE_COUNT] = {"float32", "float16", "bfloat16",
                                                        "int32",   "int64",   "uint8"};

size_t lf_dtype_size(lf_dtype dtype) { return (unsigned)dtype < LF_DTYPE_COUNT ? dtype_sizes[dtype] : 0; }

const char *lf_dtype_name(lf_dtype dtype) {
    return (unsigned)dtype < LF_DTYPE_COUNT ? dtype_names[dtype] : NULL;
}

int lf_dtype_from_name(const char *name, lf_dtype *dtype) {
    for (int i = 0; i < LF_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *dtype = (lf_dtype)i;
            return LF_OK;
        }
    }
    return lf_error(LF_EINVAL,
                    "unknown dtype '%s' (expected float32, float16, bfloat16, int32, int64 or uint8)", name);
}

const char *lf_device_name(lf_device device) { return device == LF_CUDA ? "cuda" : "cpu"; }

int lf_shape_size(const char *what, lf_dtype dtype, int ndim, const int64_t *shape, size_t *count,
                  size_t *bytes) {
    size_t item = lf_dtype_size(dtype);
    if (item == 0) return lf_error(LF_EINVAL, "%s: invalid dtype code %d", what, (int)dtype);
    if (ndim < 0 || ndim > LF_MAX_DIMS)
        return lf_error(LF_EINVAL, "%s: %d dimensions, at most %d are supported", what, ndim, LF_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lf_error(LF_EINVAL, "%s: negative extent %lld in dimension %d", what, (long long)shape[i],
                            i);
        if (shape[i] != 0 && n > SIZE_MAX / item / (size_t)shape[i])
            return lf_error(LF_EINVAL, "%s: shape too large (size overflows)", what);
        n *= (size_t)shape[i];
    }
    *count = n;
    *bytes = n * item;
    return LF_OK;
}

int lf_tensor_init(lf_tensor *t, const char *what, lf_dtype dtype, lf_device device, int ndim,
                   const int64_t *shape, void *data) {
    size_t count, bytes;
    int code = lf_shape_size(what, dtype, ndim, shape, &count, &bytes);
    if (code != LF_OK) return code;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = device;
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
    t->numel = count;
    t->nbytes = bytes;
    t->data = data;
    return LF_OK;
}

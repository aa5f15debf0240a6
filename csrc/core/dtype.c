#include "core/dtype.h"

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

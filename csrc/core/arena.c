#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda_backend.h"
#include "core/error.h"

size_t lf_arena_aligned(size_t bytes) {
    if (bytes > SIZE_MAX - (LF_ARENA_ALIGN - 1)) return SIZE_MAX;
    return (bytes + LF_ARENA_ALIGN - 1) / LF_ARENA_ALIGN * LF_ARENA_ALIGN;
}

static int cpu_block(lf_arena *arena, size_t capacity) {
    // calloc of a large block maps zero pages lazily: planning a big arena costs no RSS
    arena->block = calloc(1, capacity + LF_ARENA_ALIGN);
    if (arena->block == NULL)
        return lf_error(LF_ENOMEM, "arena: cannot allocate %zu bytes on the cpu", capacity);
    uintptr_t start = ((uintptr_t)arena->block + LF_ARENA_ALIGN - 1) / LF_ARENA_ALIGN * LF_ARENA_ALIGN;
    arena->base = (char *)start;
    return LF_OK;
}

static int cuda_block(lf_arena *arena, size_t capacity) {
    const lf_cuda_api *cuda = lf_cuda();
    if (cuda == NULL) return lf_error(LF_ECUDA, "arena: CUDA unavailable: %s", lf_cuda_unavailable_reason());
    int code = cuda->malloc(&arena->block, capacity);
    if (code != 0)
        return lf_error(LF_ENOMEM, "arena: cannot allocate %zu bytes on the GPU: %s", capacity,
                        cuda->error_string(code));
    arena->base = arena->block; // cudaMalloc returns 256-byte aligned memory
    return LF_OK;
}

int lf_arena_create(lf_arena *arena, lf_device device, size_t capacity) {
    memset(arena, 0, sizeof *arena);
    if (device != LF_CPU && device != LF_CUDA)
        return lf_error(LF_EINVAL, "arena: invalid device code %d", device);
    capacity = lf_arena_aligned(capacity);
    if (capacity == SIZE_MAX) return lf_error(LF_EINVAL, "arena: capacity too large");
    arena->device = device;
    int code = device == LF_CPU ? cpu_block(arena, capacity) : cuda_block(arena, capacity);
    if (code != LF_OK) return code;
    arena->capacity = capacity;
    return LF_OK;
}

void *lf_arena_alloc(lf_arena *arena, size_t bytes, const char *what) {
    size_t need = lf_arena_aligned(bytes);
    if (arena->base == NULL || need > arena->capacity - arena->used) {
        lf_error(LF_ENOMEM, "arena: no room for %s (%zu bytes; %zu of %zu used)", what, bytes, arena->used,
                 arena->capacity);
        return NULL;
    }
    void *p = arena->base + arena->used;
    arena->used += need;
    return p;
}

int lf_arena_tensor(lf_arena *arena, lf_tensor *t, const char *what, lf_dtype dtype, int ndim,
                    const int64_t *shape) {
    int code = lf_tensor_init(t, what, dtype, arena->device, ndim, shape, NULL);
    if (code != LF_OK) return code;
    t->data = lf_arena_alloc(arena, t->nbytes, what);
    return t->data == NULL ? lf_error_code() : LF_OK;
}

void lf_arena_reset(lf_arena *arena) { arena->used = 0; }

void lf_arena_destroy(lf_arena *arena) {
    if (arena->block != NULL) {
        if (arena->device == LF_CPU) {
            free(arena->block);
        } else if (lf_cuda() != NULL) {
            lf_cuda()->free(arena->block);
        }
    }
    memset(arena, 0, sizeof *arena);
}

// The arena: one block allocated once (parameters, gradients or activations), carved into
// 64-byte aligned pieces. Nothing is freed piece by piece; reset or destroy the whole arena.
// Plan first: sum lf_arena_aligned(bytes) over every piece, then create the arena that size.
#pragma once

#include <stddef.h>

#include "core/tensor.h"

#define LF_ARENA_ALIGN 64

typedef struct lf_arena {
    lf_device device;
    char *base;      // 64-byte aligned start (device memory for LF_CUDA)
    void *block;     // what was allocated (freed by lf_arena_destroy)
    size_t capacity; // bytes usable from base
    size_t used;     // bytes handed out, each piece rounded up to LF_ARENA_ALIGN
} lf_arena;

// bytes rounded up to the arena's alignment: what one piece of that size takes.
size_t lf_arena_aligned(size_t bytes);
// Allocates capacity bytes on device, zero-filled on the CPU (pages are touched lazily).
// CUDA needs the kernels library loaded (core/cuda_backend.h); else LF_ECUDA.
int lf_arena_create(lf_arena *arena, lf_device device, size_t capacity);
// The next bytes of the arena, or NULL with an LF_ENOMEM error naming what when it is full.
void *lf_arena_alloc(lf_arena *arena, size_t bytes, const char *what);
// A tensor of the given dtype and shape whose storage comes from the arena.
int lf_arena_tensor(lf_arena *arena, lf_tensor *t, const char *what, lf_dtype dtype, int ndim,
                    const int64_t *shape);
// Hands the whole arena out again (pieces handed out before become invalid).
void lf_arena_reset(lf_arena *arena);
void lf_arena_destroy(lf_arena *arena);

// One bump planner for every activation workspace (the CPU encoder and decoder, their CUDA twins),
// llm.c's way: a first pass with base NULL counts the bytes a layout needs, a second pass over
// memory of that size hands out the same layout. Each buffer starts on an `align`-byte boundary
// (64 on the CPU: a cache line and an AVX-512 vector; 256 on CUDA, for vector loads and cuBLASLt).
#pragma once

#include <stddef.h>

typedef struct {
    char *base; // NULL: count only
    size_t used, align;
} lf_plan;

static inline lf_plan lf_plan_start(void *base, size_t align) {
    lf_plan p = {(char *)base, 0, align};
    return p;
}

static inline void *lf_plan_take(lf_plan *p, size_t bytes) {
    void *out = p->base ? p->base + p->used : NULL;
    p->used += (bytes + p->align - 1) / p->align * p->align;
    return out;
}

// n floats (CPU workspaces are float arrays: LF_CPU_ALIGN bytes apart)
enum { LF_CPU_ALIGN = 64 };
static inline float *lf_plan_floats(lf_plan *p, size_t n) {
    return (float *)lf_plan_take(p, n * sizeof(float));
}

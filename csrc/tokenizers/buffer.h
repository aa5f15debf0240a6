// Growable arrays of int32 and bytes used as per-thread scratch by the tokenizers.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *data;
    size_t len, cap;
} lf_ivec;

typedef struct {
    unsigned char *data;
    size_t len, cap;
} lf_bbuf;

// Both return LF_OK or LF_ENOMEM (with the error message set).
int lf_ivec_reserve(lf_ivec *v, size_t cap);
int lf_bbuf_reserve(lf_bbuf *b, size_t cap);
void lf_ivec_free(lf_ivec *v);
void lf_bbuf_free(lf_bbuf *b);

static inline int lf_ivec_push(lf_ivec *v, int32_t x) {
    if (v->len == v->cap && lf_ivec_reserve(v, v->cap ? 2 * v->cap : 64)) return -1;
    v->data[v->len++] = x;
    return 0;
}

static inline int lf_bbuf_append(lf_bbuf *b, const unsigned char *s, size_t n) {
    if (b->len + n > b->cap && lf_bbuf_reserve(b, 2 * (b->len + n) + 64)) return -1;
    for (size_t i = 0; i < n; i++)
        b->data[b->len + i] = s[i];
    b->len += n;
    return 0;
}

#include "tokenizers/buffer.h"

#include <stdlib.h>

#include "core/error.h"

int lf_ivec_reserve(lf_ivec *v, size_t cap) {
    if (cap <= v->cap) return LF_OK;
    int32_t *p = realloc(v->data, cap * sizeof *p);
    if (p == NULL) return lf_error(LF_ENOMEM, "tokenizer: out of memory for %zu ids", cap);
    v->data = p;
    v->cap = cap;
    return LF_OK;
}

int lf_bbuf_reserve(lf_bbuf *b, size_t cap) {
    if (cap <= b->cap) return LF_OK;
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL) return lf_error(LF_ENOMEM, "tokenizer: out of memory for %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return LF_OK;
}

void lf_ivec_free(lf_ivec *v) {
    free(v->data);
    *v = (lf_ivec){0};
}

void lf_bbuf_free(lf_bbuf *b) {
    free(b->data);
    *b = (lf_bbuf){0};
}

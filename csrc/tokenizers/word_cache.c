// The per-thread word cache of the BPE tokenizers: open addressing on the word's hash, word bytes
// and ids kept in two growing buffers; when it fills up it is emptied and starts again.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"

enum { CACHE_SLOTS = 1 << 14, CACHE_MAX_WORDS = CACHE_SLOTS / 2 };

static size_t find_slot(const lf_word_cache *c, const unsigned char *word, size_t len, uint64_t h,
                        int *found) {
    size_t slot = h & (c->cap - 1);
    *found = 0;
    while (c->hash[slot]) {
        if (c->hash[slot] == h && c->key_len[slot] == len &&
            memcmp(c->keys.data + c->key_at[slot], word, len) == 0) {
            *found = 1;
            break;
        }
        slot = (slot + 1) & (c->cap - 1);
    }
    return slot;
}

int lf_word_cache_get(lf_word_cache *c, const unsigned char *word, size_t len, lf_ivec *ids) {
    if (c->cap == 0 || len > LF_CACHE_MAX_WORD) return 0;
    int found;
    size_t slot = find_slot(c, word, len, lf_hash_bytes(word, len), &found);
    if (!found || lf_ivec_reserve(ids, ids->len + c->ids_len[slot])) return 0;
    if (c->ids_len[slot]) // a word can have no ids (bytes outside a byte-level vocabulary)
        memcpy(ids->data + ids->len, c->ids.data + c->ids_at[slot], c->ids_len[slot] * sizeof *ids->data);
    ids->len += c->ids_len[slot];
    return 1;
}

static int cache_reset(lf_word_cache *c) {
    if (c->cap == 0) {
        c->cap = CACHE_SLOTS;
        c->hash = malloc(c->cap * sizeof *c->hash);
        c->key_at = malloc(c->cap * sizeof *c->key_at);
        c->key_len = malloc(c->cap * sizeof *c->key_len);
        c->ids_at = malloc(c->cap * sizeof *c->ids_at);
        c->ids_len = malloc(c->cap * sizeof *c->ids_len);
        if (!c->hash || !c->key_at || !c->key_len || !c->ids_at || !c->ids_len) {
            lf_word_cache_free(c);
            return lf_error(LF_ENOMEM, "tokenizer: out of memory for the word cache");
        }
    }
    memset(c->hash, 0, c->cap * sizeof *c->hash);
    c->n = c->keys.len = c->ids.len = 0;
    return LF_OK;
}

int lf_word_cache_put(lf_word_cache *c, const unsigned char *word, size_t len, const int32_t *ids, size_t n) {
    if (len > LF_CACHE_MAX_WORD) return LF_OK;
    if ((c->cap == 0 || c->n >= CACHE_MAX_WORDS) && cache_reset(c)) return LF_ENOMEM;
    uint64_t h = lf_hash_bytes(word, len);
    int found;
    size_t slot = find_slot(c, word, len, h, &found);
    if (found) return LF_OK;
    if (lf_bbuf_reserve(&c->keys, c->keys.len + len + 1) || lf_ivec_reserve(&c->ids, c->ids.len + n + 1))
        return LF_ENOMEM;
    c->hash[slot] = h;
    c->key_at[slot] = (uint32_t)c->keys.len;
    c->key_len[slot] = (uint32_t)len;
    c->ids_at[slot] = (uint32_t)c->ids.len;
    c->ids_len[slot] = (uint32_t)n;
    memcpy(c->keys.data + c->keys.len, word, len);
    c->keys.len += len;
    if (n) memcpy(c->ids.data + c->ids.len, ids, n * sizeof *ids);
    c->ids.len += n;
    c->n++;
    return LF_OK;
}

void lf_word_cache_free(lf_word_cache *c) {
    free(c->hash);
    free(c->key_at);
    free(c->key_len);
    free(c->ids_at);
    free(c->ids_len);
    lf_bbuf_free(&c->keys);
    lf_ivec_free(&c->ids);
    memset(c, 0, sizeof *c);
}

#include "tokenizers/vocab.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

uint64_t lf_hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h | 1; // never 0 (the empty slot)
}

static size_t table_size(size_t n) {
    size_t size = 16;
    while (size < 2 * n + 16)
        size *= 2;
    return size;
}

int lf_vocab_init(lf_vocab *v, const char *const *tokens, const size_t *lens, const int32_t *ids, size_t n,
                  int32_t n_ids) {
    memset(v, 0, sizeof *v);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_ids)
            return lf_error(LF_EINVAL, "vocab: id %d of token %zu is outside [0, %d)", ids[i], i, n_ids);
        total += lens[i];
    }
    size_t size = table_size(n);
    v->mask = size - 1;
    v->n_ids = n_ids;
    v->hashes = calloc(size, sizeof *v->hashes);
    v->ids = malloc(size * sizeof *v->ids);
    v->bytes = malloc(total + 1);
    v->offsets = calloc((size_t)n_ids + 1, sizeof *v->offsets);
    size_t *len_of = calloc((size_t)n_ids, sizeof *len_of);
    const char **str_of = calloc((size_t)n_ids, sizeof *str_of);
    if (!v->hashes || !v->ids || !v->bytes || !v->offsets || !len_of || !str_of) {
        free(len_of);
        free(str_of);
        lf_vocab_free(v);
        return lf_error(LF_ENOMEM, "vocab: out of memory for %zu tokens", n);
    }
    for (size_t i = n; i-- > 0;) { // the first entry of an id wins
        str_of[ids[i]] = tokens[i];
        len_of[ids[i]] = lens[i];
    }
    size_t pos = 0;
    for (int32_t id = 0; id < n_ids; id++) {
        v->offsets[id] = pos;
        if (str_of[id]) memcpy(v->bytes + pos, str_of[id], len_of[id]);
        pos += str_of[id] ? len_of[id] : 0;
    }
    v->offsets[n_ids] = pos;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)tokens[i];
        uint64_t h = lf_hash_bytes(s, lens[i]);
        size_t slot = h & v->mask;
        int duplicate = 0;
        while (v->hashes[slot]) {
            size_t len;
            const unsigned char *t = lf_vocab_token(v, v->ids[slot], &len);
            if (v->hashes[slot] == h && len == lens[i] && memcmp(t, s, len) == 0) duplicate = 1;
            if (duplicate) break;
            slot = (slot + 1) & v->mask;
        }
        if (duplicate) continue;
        v->hashes[slot] = h;
        v->ids[slot] = ids[i];
    }
    free(len_of);
    free(str_of);
    return LF_OK;
}

void lf_vocab_free(lf_vocab *v) {
    free(v->hashes);
    free(v->ids);
    free(v->bytes);
    free(v->offsets);
    memset(v, 0, sizeof *v);
}

int32_t lf_vocab_find(const lf_vocab *v, const unsigned char *s, size_t n) {
    uint64_t h = lf_hash_bytes(s, n);
    for (size_t slot = h & v->mask; v->hashes[slot]; slot = (slot + 1) & v->mask) {
        if (v->hashes[slot] != h) continue;
        int32_t id = v->ids[slot];
        size_t len = v->offsets[id + 1] - v->offsets[id];
        if (len == n && memcmp(v->bytes + v->offsets[id], s, n) == 0) return id;
    }
    return -1;
}

const unsigned char *lf_vocab_token(const lf_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n_ids) {
        *len = 0;
        return NULL;
    }
    *len = v->offsets[id + 1] - v->offsets[id];
    return v->bytes + v->offsets[id];
}

static uint64_t pair_key(int32_t left, int32_t right) {
    return (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
}

// The murmur3 finalizer: every bit of both ids reaches the low bits that pick the slot.
static size_t pair_slot(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    key *= 0xC4CEB9FE1A85EC53ull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

int lf_merges_init(lf_merges *m, size_t n) {
    size_t size = table_size(n);
    m->mask = size - 1;
    m->slots = calloc(size, sizeof *m->slots);
    if (m->slots == NULL) return lf_error(LF_ENOMEM, "merges: out of memory for %zu merges", n);
    return LF_OK;
}

void lf_merges_free(lf_merges *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void lf_merges_add(lf_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = pair_key(left, right);
    size_t slot = pair_slot(key, m->mask);
    while (m->slots[slot].key && m->slots[slot].key != key)
        slot = (slot + 1) & m->mask;
    m->slots[slot] = (lf_merge_slot){key, rank, merged};
}

int32_t lf_merges_find(const lf_merges *m, int32_t left, int32_t right, int32_t *merged) {
    uint64_t key = pair_key(left, right);
    for (size_t slot = pair_slot(key, m->mask); m->slots[slot].key; slot = (slot + 1) & m->mask) {
        if (m->slots[slot].key == key) {
            *merged = m->slots[slot].merged;
            return m->slots[slot].rank;
        }
    }
    return -1;
}

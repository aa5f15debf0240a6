// Hash tables of a tokenizer: token string -> id, and BPE merge pair -> (rank, merged id).
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *hashes;     // 0 = empty slot
    int32_t *ids;         // slot -> token id
    size_t mask;          // slots - 1
    unsigned char *bytes; // token strings, token id -> [offsets[id], offsets[id+1])
    size_t *offsets;
    int32_t n_ids;
} lf_vocab;

// FNV-1a of s[0:n], never 0.
uint64_t lf_hash_bytes(const unsigned char *s, size_t n);

// Builds the table from n (string, id) entries; ids must lie in [0, n_ids). A duplicate
// string keeps its first id. Returns LF_OK or an error code.
int lf_vocab_init(lf_vocab *v, const char *const *tokens, const size_t *lens, const int32_t *ids, size_t n,
                  int32_t n_ids);
void lf_vocab_free(lf_vocab *v);
// Returns the id of s[0:n], or -1.
int32_t lf_vocab_find(const lf_vocab *v, const unsigned char *s, size_t n);
// The string of an id (NULL and *len 0 when no token has it).
const unsigned char *lf_vocab_token(const lf_vocab *v, int32_t id, size_t *len);

typedef struct {
    uint64_t key; // (left << 32 | right) + 1, 0 = empty
    int32_t rank, merged;
} lf_merge_slot;

typedef struct {
    lf_merge_slot *slots; // one cache line holds a key with its rank and merged id
    size_t mask;
} lf_merges;

int lf_merges_init(lf_merges *m, size_t n);
void lf_merges_free(lf_merges *m);
// Adds a merge; a later duplicate replaces an earlier one (as a Rust HashMap collect does).
void lf_merges_add(lf_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
// Returns the rank of (left, right) and sets *merged, or -1.
int32_t lf_merges_find(const lf_merges *m, int32_t left, int32_t right, int32_t *merged);

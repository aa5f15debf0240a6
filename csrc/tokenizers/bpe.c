// The BPE model of tokenizers: a word's symbols merged by merge rank (lowest first, leftmost on
// ties) with a min-heap, and the SentencePiece-style start from characters with byte fallback
// (<0xNN>) and fused unknown tokens.
#include <stdlib.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"

// Heap entries pack (rank, position) so that the smallest int64 is the next merge.
static int64_t entry(int32_t rank, size_t pos) { return ((int64_t)rank << 32) | (int64_t)pos; }

static void heap_push(int64_t *heap, size_t *n, int64_t x) {
    size_t i = (*n)++;
    while (i > 0 && heap[(i - 1) / 2] > x) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = x;
}

static int64_t heap_pop(int64_t *heap, size_t *n) {
    int64_t top = heap[0], x = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= x) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = x;
    return top;
}

// The symbols of one word as a linked list; rank[i] / merged[i] describe the pair starting at
// symbol i (rank -1: none), so a heap entry is current exactly when its rank is still rank[i].
typedef struct {
    int32_t *sym, *prev, *next, *rank, *merged;
    int64_t *heap;
    size_t heap_n;
} bpe_state;

static void set_pair(const lf_tokenizer *tok, bpe_state *w, int32_t pos) {
    if (pos < 0) return;
    w->rank[pos] = w->next[pos] < 0
                       ? -1
                       : lf_merges_find(&tok->merges, w->sym[pos], w->sym[w->next[pos]], &w->merged[pos]);
    if (w->rank[pos] >= 0) heap_push(w->heap, &w->heap_n, entry(w->rank[pos], (size_t)pos));
}

// syms: (n,) initial symbol ids of one word; appends the merged ids to ids.
int lf_bpe_word(const lf_tokenizer *tok, const int32_t *syms, size_t n, lf_tok_scratch *s, lf_ivec *ids) {
    if (n == 0) return LF_OK;
    if (lf_ivec_reserve(&s->syms, n) || lf_ivec_reserve(&s->prev, n) || lf_ivec_reserve(&s->next, n) ||
        lf_ivec_reserve(&s->ranks, n) || lf_ivec_reserve(&s->merged, n) || lf_ivec_reserve(ids, ids->len + n))
        return LF_ENOMEM;
    // the heap holds at most n - 1 pairs plus one per merge: under 2n entries
    if (s->heap_cap < 2 * n) {
        int64_t *h = realloc(s->heap, 2 * n * sizeof *h);
        if (h == NULL) return lf_error(LF_ENOMEM, "BPE: out of memory for a word of %zu symbols", n);
        s->heap = h;
        s->heap_cap = 2 * n;
    }
    bpe_state w = {s->syms.data, s->prev.data, s->next.data, s->ranks.data, s->merged.data, s->heap, 0};
    int32_t *sym = w.sym, *prev = w.prev, *next = w.next;
    for (size_t i = 0; i < n; i++) {
        sym[i] = syms[i];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i < n; i++)
        set_pair(tok, &w, (int32_t)i);
    while (w.heap_n > 0) {
        int64_t top = heap_pop(w.heap, &w.heap_n);
        int32_t rank = (int32_t)(top >> 32), pos = (int32_t)(top & 0xFFFFFFFF);
        if (w.rank[pos] != rank) continue; // stale: the pair at pos changed since
        int32_t right = next[pos];
        sym[pos] = w.merged[pos];
        sym[right] = -1;
        w.rank[right] = -1;
        next[pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = pos;
        set_pair(tok, &w, prev[pos]);
        set_pair(tok, &w, pos);
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        ids->data[ids->len++] = sym[i];
    return LF_OK;
}

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// word: UTF-8; starts from one symbol per character (byte fallback / unknown as tokenizers).
int lf_bpe_chars(const lf_tokenizer *tok, const unsigned char *word, size_t len, lf_tok_scratch *s,
                 lf_ivec *ids) {
    if (lf_word_cache_get(&s->cache, word, len, ids)) return LF_OK;
    size_t mark = ids->len;
    s->cls.len = 0; // the initial symbols
    int32_t unk = -1;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(word[i]);
        int32_t id = lf_vocab_find(&tok->vocab, word + i, n);
        if (id >= 0) {
            if (unk >= 0 && lf_ivec_push(&s->cls, unk)) return LF_ENOMEM;
            unk = -1;
            if (lf_ivec_push(&s->cls, id)) return LF_ENOMEM;
            i += n;
            continue;
        }
        int all_bytes = tok->cfg.byte_fallback;
        for (size_t k = 0; k < n && all_bytes; k++)
            all_bytes = tok->byte_ids[word[i + k]] >= 0;
        if (all_bytes) {
            for (size_t k = 0; k < n; k++)
                if (lf_ivec_push(&s->cls, tok->byte_ids[word[i + k]])) return LF_ENOMEM;
        } else if (tok->cfg.unk_id >= 0) {
            if (unk >= 0 && !tok->cfg.fuse_unk && lf_ivec_push(&s->cls, unk)) return LF_ENOMEM;
            unk = tok->cfg.unk_id;
        }
        i += n;
    }
    if (unk >= 0 && lf_ivec_push(&s->cls, unk)) return LF_ENOMEM;
    if (lf_bpe_word(tok, s->cls.data, s->cls.len, s, ids)) return lf_error_code();
    return lf_word_cache_put(&s->cache, word, len, ids->data + mark, ids->len - mark);
}

// A tokenizer of one of three families, as Hugging Face tokenizers runs them:
//   byte-level BPE (GPT-2 / RoBERTa), SentencePiece BPE with byte fallback (Llama / Mistral),
//   WordPiece with the BERT normalizer (BERT / MiniLM).
// Pipeline per text: split out added tokens on the raw text -> normalize -> split out
// normalized added tokens -> pre-tokenize into words -> model (BPE / WordPiece) -> ids;
// then truncation and the special-token template.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tokenizers/buffer.h"
#include "tokenizers/vocab.h"

enum { LF_TOK_BPE = 0, LF_TOK_WORDPIECE = 1 };
enum { LF_PRE_NONE = 0, LF_PRE_BYTELEVEL = 1, LF_PRE_METASPACE = 2, LF_PRE_BERT = 3 };
enum { LF_PREPEND_NEVER = 0, LF_PREPEND_FIRST = 1, LF_PREPEND_ALWAYS = 2 };
enum { LF_TRUNC_LONGEST_FIRST = 0, LF_TRUNC_ONLY_FIRST = 1, LF_TRUNC_ONLY_SECOND = 2 };

typedef struct {
    int model;         // LF_TOK_*
    int pre_tokenizer; // LF_PRE_*
    // BERT normalizer (applied when bert_normalizer is set)
    int bert_normalizer, clean_text, handle_chinese_chars, strip_accents, lowercase;
    int add_prefix_space;         // byte-level: prepend ' ' to each piece not starting with ' '
    int prepend_scheme, split;    // Metaspace: LF_PREPEND_*, split words at '▁'
    int byte_fallback, fuse_unk;  // BPE
    int32_t unk_id;               // -1: no unknown token
    int max_input_chars_per_word; // WordPiece
    const char *subword_prefix;   // WordPiece continuation prefix ("##")
} lf_tok_config;

typedef struct {
    const char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} lf_added_token;

// The special tokens around the sequences: single = pre A post, pair = pre A mid B post_pair.
// Each part is ids with their token type ids; B's own tokens get type_b.
typedef struct {
    int32_t *ids, *types;
    int n;
} lf_tok_part;

typedef struct {
    lf_tok_part pre, post, pair_pre, mid, pair_post;
    int32_t type_b;
} lf_tok_template;

typedef struct {
    lf_added_token tok;   // tok.content points at content below
    unsigned char *match; // the string matched in the text (normalized when tok.normalized)
    size_t match_len;
    unsigned char *content;
} lf_added_entry;

typedef struct {
    lf_tok_config cfg;
    lf_vocab vocab;
    lf_merges merges;
    lf_added_entry *added;
    int n_added;
    lf_tok_template tmpl;
    uint8_t added_first[2][256]; // [normalized][byte]: some added token starts with this byte
    int32_t byte_ids[256];       // byte-level: vocab id of each byte's character; fallback: <0xNN>
    int32_t max_id;              // largest id of the vocabulary and the added tokens
    uint8_t *id_kind;            // (max_id + 1,): 0 no token, 1 vocabulary, 2 added, 3 added special
    int32_t *id_added;           // (max_id + 1,): index into added, or -1
    unsigned char prefix[16];    // WordPiece continuation prefix
    size_t prefix_len;
    int meta_boundaries; // no merged token holds '▁' after another character: Metaspace text can be
                         // cut before each such '▁' without changing the BPE result
} lf_tokenizer;

// A per-thread cache of BPE results: word bytes -> ids (words repeat across a batch of texts).
typedef struct {
    uint64_t *hash; // (cap,) 0: empty slot
    uint32_t *key_at, *key_len, *ids_at, *ids_len;
    size_t cap, n;
    lf_bbuf keys;
    lf_ivec ids;
} lf_word_cache;

// Per-thread working memory of the encoder.
typedef struct {
    lf_word_cache cache;
    lf_bbuf norm, word;
    lf_ivec spans_raw, spans_norm, seq_a, seq_b, offs, cls, syms, prev, next, ranks, merged;
    int64_t *heap;
    size_t heap_cap;
} lf_tok_scratch;

typedef struct {
    int add_special_tokens;
    int64_t max_length; // < 0: no truncation
    int strategy;       // LF_TRUNC_*
    int truncate_left;  // truncation side
} lf_encode_options;

// Creates a tokenizer from its vocabulary (n_vocab (string, id) pairs), BPE merges (n_merges
// pairs of strings; NULL for WordPiece) and added tokens. Returns NULL with the error set.
lf_tokenizer *lf_tokenizer_create(const lf_tok_config *cfg, const char *const *tokens,
                                  const size_t *token_lens, const int32_t *ids, size_t n_vocab,
                                  const char *const *merge_left, const size_t *merge_left_lens,
                                  const char *const *merge_right, const size_t *merge_right_lens,
                                  size_t n_merges, const lf_added_token *added, int n_added,
                                  const lf_tok_template *tmpl);
void lf_tokenizer_free(lf_tokenizer *tok);
void lf_tok_scratch_free(lf_tok_scratch *s);

// Encodes UTF-8 text (and an optional pair, NULL) into ids and type ids (appended to the
// emptied outputs). Invalid UTF-8 is an LF_EINVAL error naming the byte offset.
int lf_tokenizer_encode(const lf_tokenizer *tok, const unsigned char *text, size_t len,
                        const unsigned char *pair, size_t pair_len, const lf_encode_options *opt,
                        lf_tok_scratch *s, lf_ivec *ids, lf_ivec *types);

enum { LF_DEC_BYTELEVEL = 0, LF_DEC_METASPACE = 1, LF_DEC_WORDPIECE = 2 };
typedef struct {
    int decoder;    // LF_DEC_*
    int strip_left; // Metaspace: leading spaces removed from the decoded text (0 or 1)
    int cleanup;    // WordPiece: the decoder's cleanup of spaces before punctuation
    int skip_special;
} lf_decode_options;

// Decodes ids to UTF-8 (out emptied first), as the family's HF decoder does. Ids outside
// [0, max_id] are an LF_EINVAL error naming the id.
int lf_tokenizer_decode(const lf_tokenizer *tok, const int64_t *ids, size_t n, const lf_decode_options *opt,
                        lf_bbuf *out);
// The token string of an id (added tokens included); NULL when no token has the id.
const unsigned char *lf_tokenizer_token(const lf_tokenizer *tok, int32_t id, size_t *len);

// Internal stages (one file each).
int lf_added_split(const lf_tokenizer *tok, const unsigned char *text, size_t len, int normalized,
                   lf_ivec *spans);
int lf_bert_normalize(const lf_tok_config *cfg, const unsigned char *text, size_t len, lf_bbuf *out);
int lf_pretokenize(const lf_tokenizer *tok, const unsigned char *text, size_t len, int first,
                   lf_tok_scratch *s, lf_ivec *ids);
int lf_bpe_word(const lf_tokenizer *tok, const int32_t *syms, size_t n, lf_tok_scratch *s, lf_ivec *ids);
int lf_bpe_chars(const lf_tokenizer *tok, const unsigned char *word, size_t len, lf_tok_scratch *s,
                 lf_ivec *ids);
int lf_wordpiece_word(const lf_tokenizer *tok, const unsigned char *word, size_t len, lf_tok_scratch *s,
                      lf_ivec *ids);
// The cache: on a hit appends the word's ids to ids and returns 1; else 0. Words longer than
// LF_CACHE_MAX_WORD bytes are never cached.
enum { LF_CACHE_MAX_WORD = 48 };
int lf_word_cache_get(lf_word_cache *c, const unsigned char *word, size_t len, lf_ivec *ids);
int lf_word_cache_put(lf_word_cache *c, const unsigned char *word, size_t len, const int32_t *ids, size_t n);
void lf_word_cache_free(lf_word_cache *c);
// Checks the text is valid UTF-8 and under the size limit; names `what` in the error.
int lf_tok_check_text(const unsigned char *text, size_t len, const char *what);

// Tokenizer construction and the encoding pipeline: added tokens, normalizer, pre-tokenizer,
// model, then truncation and the special-token template (tokenizers' post_process).
#include "tokenizers/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/unicode.h"

// Texts are indexed with int32 offsets.
#define LF_TOK_MAX_TEXT ((size_t)INT32_MAX / 4)

int lf_tok_check_text(const unsigned char *text, size_t len, const char *what) {
    if (len > LF_TOK_MAX_TEXT)
        return lf_error(LF_EINVAL, "%s: %zu bytes is over the limit of %zu bytes", what, len,
                        LF_TOK_MAX_TEXT);
    size_t valid = lf_utf8_valid_prefix(text, len);
    if (valid != len) return lf_error(LF_EINVAL, "%s: invalid UTF-8 at byte %zu", what, valid);
    return LF_OK;
}

static int copy_part(lf_tok_part *dst, const lf_tok_part *src, int32_t max_id, const char *name) {
    dst->n = src->n;
    dst->ids = malloc(((size_t)src->n + 1) * sizeof *dst->ids);
    dst->types = malloc(((size_t)src->n + 1) * sizeof *dst->types);
    if (!dst->ids || !dst->types) return lf_error(LF_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; i < src->n; i++) {
        if (src->ids[i] < 0 || src->ids[i] > max_id)
            return lf_error(LF_EINVAL, "post-processor %s: token id %d is outside the vocabulary", name,
                            src->ids[i]);
        dst->ids[i] = src->ids[i];
        dst->types[i] = src->types[i];
    }
    return LF_OK;
}

static int init_template(lf_tokenizer *tok, const lf_tok_template *t) {
    tok->tmpl.type_b = t ? t->type_b : 0;
    lf_tok_template empty = {0};
    if (t == NULL) t = &empty;
    if (copy_part(&tok->tmpl.pre, &t->pre, tok->max_id, "pre") ||
        copy_part(&tok->tmpl.post, &t->post, tok->max_id, "post") ||
        copy_part(&tok->tmpl.pair_pre, &t->pair_pre, tok->max_id, "pair_pre") ||
        copy_part(&tok->tmpl.mid, &t->mid, tok->max_id, "mid") ||
        copy_part(&tok->tmpl.pair_post, &t->pair_post, tok->max_id, "pair_post"))
        return lf_error_code();
    return LF_OK;
}

// 1 when s holds U+2581 '▁' right after a character other than '▁'.
static int meta_after_char(const unsigned char *s, size_t len) {
    static const unsigned char meta[3] = {0xE2, 0x96, 0x81};
    for (size_t i = 1; i + 3 <= len; i++)
        if (memcmp(s + i, meta, 3) == 0 && (i < 3 || memcmp(s + i - 3, meta, 3) != 0)) return 1;
    return 0;
}

static int init_merges(lf_tokenizer *tok, const char *const *left, const size_t *left_lens,
                       const char *const *right, const size_t *right_lens, size_t n) {
    tok->meta_boundaries = tok->cfg.pre_tokenizer == LF_PRE_METASPACE;
    if (lf_merges_init(&tok->merges, n)) return LF_ENOMEM;
    lf_bbuf both = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t a = lf_vocab_find(&tok->vocab, (const unsigned char *)left[i], left_lens[i]);
        int32_t b = lf_vocab_find(&tok->vocab, (const unsigned char *)right[i], right_lens[i]);
        both.len = 0;
        if (lf_bbuf_append(&both, (const unsigned char *)left[i], left_lens[i]) ||
            lf_bbuf_append(&both, (const unsigned char *)right[i], right_lens[i])) {
            lf_bbuf_free(&both);
            return LF_ENOMEM;
        }
        int32_t m = lf_vocab_find(&tok->vocab, both.data, both.len);
        if (a < 0 || b < 0 || m < 0) {
            lf_error(LF_EINVAL,
                     "merges: merge %zu (\"%.*s\" \"%.*s\") uses a token missing from the vocabulary", i,
                     (int)(left_lens[i] > 64 ? 64 : left_lens[i]), left[i],
                     (int)(right_lens[i] > 64 ? 64 : right_lens[i]), right[i]);
            lf_bbuf_free(&both);
            return LF_EINVAL;
        }
        if (meta_after_char(both.data, both.len)) tok->meta_boundaries = 0;
        lf_merges_add(&tok->merges, a, b, (int32_t)i, m);
    }
    lf_bbuf_free(&both);
    return LF_OK;
}

// byte_ids: the vocab id of each byte's GPT-2 character (byte-level) or of "<0xNN>" (fallback).
static void init_byte_ids(lf_tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        unsigned char buf[8];
        size_t n;
        if (tok->cfg.pre_tokenizer == LF_PRE_BYTELEVEL) {
            // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to 256+
            int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            int rank = 0;
            for (int c = 0; c < b; c++)
                rank += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
            n = (size_t)lf_utf8_put(printable ? (uint32_t)b : 256u + (uint32_t)rank, buf);
        } else {
            n = (size_t)snprintf((char *)buf, sizeof buf, "<0x%02X>", b);
        }
        tok->byte_ids[b] = lf_vocab_find(&tok->vocab, buf, n);
    }
}

static int init_added(lf_tokenizer *tok, const lf_added_token *added, int n) {
    tok->added = calloc((size_t)n + 1, sizeof *tok->added);
    if (tok->added == NULL) return lf_error(LF_ENOMEM, "tokenizer: out of memory for added tokens");
    tok->n_added = n;
    for (int i = 0; i < n; i++) {
        lf_added_entry *e = &tok->added[i];
        e->tok = added[i];
        if (added[i].id < 0) return lf_error(LF_EINVAL, "added token %d: negative id %d", i, added[i].id);
        if (added[i].id > tok->max_id) tok->max_id = added[i].id;
        if (lf_tok_check_text((const unsigned char *)added[i].content, added[i].len, "added token"))
            return LF_EINVAL;
        lf_bbuf text = {0};
        int code =
            tok->cfg.bert_normalizer && added[i].normalized
                ? lf_bert_normalize(&tok->cfg, (const unsigned char *)added[i].content, added[i].len, &text)
                : (lf_bbuf_append(&text, (const unsigned char *)added[i].content, added[i].len) ? LF_ENOMEM
                                                                                                : LF_OK);
        if (code) {
            lf_bbuf_free(&text);
            return code;
        }
        e->match = text.data;
        e->match_len = text.len;
        e->content = malloc(added[i].len + 1);
        if (e->content == NULL) return lf_error(LF_ENOMEM, "tokenizer: out of memory for added tokens");
        memcpy(e->content, added[i].content, added[i].len);
        e->tok.content = (const char *)e->content;
        if (e->match_len > 0) tok->added_first[e->tok.normalized ? 1 : 0][e->match[0]] = 1;
        e->tok.normalized = e->tok.normalized ? 1 : 0;
    }
    return LF_OK;
}

static int init_id_kinds(lf_tokenizer *tok) {
    size_t n = (size_t)tok->max_id + 1;
    tok->id_kind = calloc(n, 1);
    tok->id_added = malloc(n * sizeof *tok->id_added);
    if (!tok->id_kind || !tok->id_added) return lf_error(LF_ENOMEM, "tokenizer: out of memory");
    for (size_t id = 0; id < n; id++) {
        tok->id_added[id] = -1;
        tok->id_kind[id] =
            (int32_t)id < tok->vocab.n_ids && tok->vocab.offsets[id + 1] > tok->vocab.offsets[id];
    }
    for (int i = 0; i < tok->n_added; i++) {
        tok->id_added[tok->added[i].tok.id] = i;
        tok->id_kind[tok->added[i].tok.id] = tok->added[i].tok.special ? 3 : 2;
    }
    return LF_OK;
}

lf_tokenizer *lf_tokenizer_create(const lf_tok_config *cfg, const char *const *tokens,
                                  const size_t *token_lens, const int32_t *ids, size_t n_vocab,
                                  const char *const *merge_left, const size_t *merge_left_lens,
                                  const char *const *merge_right, const size_t *merge_right_lens,
                                  size_t n_merges, const lf_added_token *added, int n_added,
                                  const lf_tok_template *tmpl) {
    lf_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) {
        lf_error(LF_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    tok->cfg = *cfg;
    int32_t n_ids = 0;
    for (size_t i = 0; i < n_vocab; i++)
        n_ids = ids[i] >= n_ids ? ids[i] + 1 : n_ids;
    tok->max_id = n_ids - 1;
    const char *prefix = cfg->subword_prefix ? cfg->subword_prefix : "";
    tok->prefix_len = strlen(prefix);
    tok->cfg.subword_prefix = NULL;
    int code = LF_OK;
    if (cfg->model != LF_TOK_BPE && cfg->model != LF_TOK_WORDPIECE)
        code = lf_error(LF_EINVAL, "tokenizer: unknown model kind %d", cfg->model);
    else if (cfg->pre_tokenizer < LF_PRE_NONE || cfg->pre_tokenizer > LF_PRE_BERT)
        code = lf_error(LF_EINVAL, "tokenizer: unknown pre-tokenizer kind %d", cfg->pre_tokenizer);
    else if (tok->prefix_len >= sizeof tok->prefix)
        code = lf_error(LF_EINVAL, "tokenizer: continuing_subword_prefix \"%s\" is too long", prefix);
    else if (cfg->model == LF_TOK_WORDPIECE && cfg->max_input_chars_per_word < 0)
        code = lf_error(LF_EINVAL, "tokenizer: max_input_chars_per_word must be >= 0");
    else if (cfg->unk_id >= n_ids)
        code = lf_error(LF_EINVAL, "tokenizer: unknown token id %d is outside the vocabulary", cfg->unk_id);
    if (code == LF_OK) {
        memcpy(tok->prefix, prefix, tok->prefix_len);
        code = lf_vocab_init(&tok->vocab, tokens, token_lens, ids, n_vocab, n_ids);
    }
    if (code == LF_OK && cfg->model == LF_TOK_BPE)
        code = init_merges(tok, merge_left, merge_left_lens, merge_right, merge_right_lens, n_merges);
    if (code == LF_OK) code = init_added(tok, added, n_added);
    if (code == LF_OK) code = init_template(tok, tmpl);
    if (code == LF_OK) code = init_id_kinds(tok);
    if (code != LF_OK) {
        lf_tokenizer_free(tok);
        return NULL;
    }
    init_byte_ids(tok);
    return tok;
}

static void free_part(lf_tok_part *p) {
    free(p->ids);
    free(p->types);
}

void lf_tokenizer_free(lf_tokenizer *tok) {
    if (tok == NULL) return;
    lf_vocab_free(&tok->vocab);
    lf_merges_free(&tok->merges);
    for (int i = 0; tok->added && i < tok->n_added; i++) {
        free(tok->added[i].match);
        free(tok->added[i].content);
    }
    free(tok->id_kind);
    free(tok->id_added);
    free(tok->added);
    free_part(&tok->tmpl.pre);
    free_part(&tok->tmpl.post);
    free_part(&tok->tmpl.pair_pre);
    free_part(&tok->tmpl.mid);
    free_part(&tok->tmpl.pair_post);
    free(tok);
}

void lf_tok_scratch_free(lf_tok_scratch *s) {
    lf_word_cache_free(&s->cache);
    lf_bbuf_free(&s->norm);
    lf_bbuf_free(&s->word);
    lf_ivec *v[] = {&s->spans_raw, &s->spans_norm, &s->seq_a, &s->seq_b, &s->offs,  &s->cls,
                    &s->syms,      &s->prev,       &s->next,  &s->ranks, &s->merged};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        lf_ivec_free(v[i]);
    free(s->heap);
    s->heap = NULL;
    s->heap_cap = 0;
}

static int has_normalized_added(const lf_tokenizer *tok) {
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].tok.normalized) return 1;
    return 0;
}

// A piece of text between raw-matched added tokens: normalize, split normalized added tokens, words.
static int encode_piece(const lf_tokenizer *tok, const unsigned char *text, size_t len, int first,
                        lf_tok_scratch *s, lf_ivec *ids) {
    if (tok->cfg.bert_normalizer) {
        if (lf_bert_normalize(&tok->cfg, text, len, &s->norm)) return lf_error_code();
        text = s->norm.data;
        len = s->norm.len;
    }
    if (!has_normalized_added(tok)) return lf_pretokenize(tok, text, len, first, s, ids);
    if (lf_added_split(tok, text, len, 1, &s->spans_norm)) return lf_error_code();
    for (size_t k = 0; k < s->spans_norm.len; k += 3) {
        int32_t a = s->spans_norm.data[k], b = s->spans_norm.data[k + 1], id = s->spans_norm.data[k + 2];
        int code = id >= 0 ? (lf_ivec_push(ids, id) ? LF_ENOMEM : LF_OK)
                           : lf_pretokenize(tok, text + a, (size_t)(b - a), first && a == 0, s, ids);
        if (code) return code;
    }
    return LF_OK;
}

static int encode_sequence(const lf_tokenizer *tok, const unsigned char *text, size_t len, lf_tok_scratch *s,
                           lf_ivec *ids) {
    ids->len = 0;
    if (lf_added_split(tok, text, len, 0, &s->spans_raw)) return lf_error_code();
    for (size_t k = 0; k < s->spans_raw.len; k += 3) {
        int32_t a = s->spans_raw.data[k], b = s->spans_raw.data[k + 1], id = s->spans_raw.data[k + 2];
        int code = id >= 0 ? (lf_ivec_push(ids, id) ? LF_ENOMEM : LF_OK)
                           : encode_piece(tok, text + a, (size_t)(b - a), a == 0, s, ids);
        if (code) return code;
    }
    return LF_OK;
}

// Keeps n ids of v: the first n (right truncation) or the last n (left truncation).
static void keep(lf_ivec *v, size_t n, int left) {
    if (v->len <= n) return;
    if (left) memmove(v->data, v->data + (v->len - n), n * sizeof *v->data);
    v->len = n;
}

// tokenizers' truncate_encodings for the sequences a and b (b NULL for a single text).
static int truncate(lf_ivec *a, lf_ivec *b, size_t max_length, const lf_encode_options *opt) {
    int left = opt->truncate_left;
    size_t total = a->len + (b ? b->len : 0);
    if (max_length == 0) {
        keep(a, 0, left);
        if (b) keep(b, 0, left);
        return LF_OK;
    }
    if (total <= max_length) return LF_OK;
    size_t to_remove = total - max_length;
    if (opt->strategy == LF_TRUNC_LONGEST_FIRST) {
        if (b == NULL) {
            keep(a, max_length, left);
            return LF_OK;
        }
        size_t n1 = a->len, n2 = b->len;
        int swap = n1 > n2;
        if (swap) n1 = b->len, n2 = a->len;
        n2 = n1 > max_length ? n1 : (n1 > max_length - n1 ? n1 : max_length - n1);
        if (n1 + n2 > max_length) {
            n1 = max_length / 2;
            n2 = n1 + max_length % 2;
        }
        keep(a, swap ? n2 : n1, left);
        keep(b, swap ? n1 : n2, left);
        return LF_OK;
    }
    lf_ivec *target = opt->strategy == LF_TRUNC_ONLY_FIRST ? a : b;
    if (target == NULL)
        return lf_error(LF_EINVAL, "truncation 'only_second' needs a second sequence (text_pair)");
    if (target->len <= to_remove)
        return lf_error(
            LF_EINVAL,
            "truncation: the sequence to truncate (%zu tokens) is too short to reach max_length %zu",
            target->len, max_length);
    keep(target, target->len - to_remove, left);
    return LF_OK;
}

static int append_part(lf_ivec *ids, lf_ivec *types, const lf_tok_part *p) {
    for (int i = 0; i < p->n; i++)
        if (lf_ivec_push(ids, p->ids[i]) || lf_ivec_push(types, p->types[i])) return LF_ENOMEM;
    return LF_OK;
}

static int append_seq(lf_ivec *ids, lf_ivec *types, const lf_ivec *seq, int32_t type) {
    for (size_t i = 0; i < seq->len; i++)
        if (lf_ivec_push(ids, seq->data[i]) || lf_ivec_push(types, type)) return LF_ENOMEM;
    return LF_OK;
}

int lf_tokenizer_encode(const lf_tokenizer *tok, const unsigned char *text, size_t len,
                        const unsigned char *pair, size_t pair_len, const lf_encode_options *opt,
                        lf_tok_scratch *s, lf_ivec *ids, lf_ivec *types) {
    ids->len = types->len = 0;
    if (lf_tok_check_text(text, len, "text") || (pair && lf_tok_check_text(pair, pair_len, "text_pair")))
        return LF_EINVAL;
    if (encode_sequence(tok, text, len, s, &s->seq_a)) return lf_error_code();
    if (pair && encode_sequence(tok, pair, pair_len, s, &s->seq_b)) return lf_error_code();
    const lf_tok_template *t = &tok->tmpl;
    int special = opt->add_special_tokens;
    size_t n_added = !special ? 0
                     : pair   ? (size_t)(t->pair_pre.n + t->mid.n + t->pair_post.n)
                              : (size_t)(t->pre.n + t->post.n);
    // tokenizers computes max_length - n_added in wrapping unsigned arithmetic: a max_length
    // below the number of special tokens truncates nothing
    if (opt->max_length >= 0 && (size_t)opt->max_length >= n_added &&
        truncate(&s->seq_a, pair ? &s->seq_b : NULL, (size_t)opt->max_length - n_added, opt))
        return lf_error_code();
    int code = LF_OK;
    if (special) code = append_part(ids, types, pair ? &t->pair_pre : &t->pre);
    if (!code) code = append_seq(ids, types, &s->seq_a, 0);
    if (!code && special && pair) code = append_part(ids, types, &t->mid);
    if (!code && pair) code = append_seq(ids, types, &s->seq_b, special ? t->type_b : 1);
    if (!code && special) code = append_part(ids, types, pair ? &t->pair_post : &t->post);
    return code;
}

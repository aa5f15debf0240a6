// Pre-tokenizers: split a piece of normalized text into words and hand each word to the model.
//   byte-level: the GPT-2 pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Metaspace: ' ' -> '▁', a '▁' prepended by the prepend scheme, optionally split before each '▁'
//   BERT: split on whitespace (dropped) and punctuation (each its own word)
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

enum { CLS_LETTER, CLS_NUMBER, CLS_SPACE, CLS_OTHER };

static int char_class(uint32_t cp) {
    unsigned f = lf_uni_flags(cp);
    if (f & LF_UNI_LETTER) return CLS_LETTER;
    if (f & LF_UNI_NUMBER) return CLS_NUMBER;
    if (f & LF_UNI_SPACE) return CLS_SPACE;
    return CLS_OTHER;
}

static int is_contraction(const unsigned char *w, size_t i, size_t len) {
    if (w[i] != '\'' || i + 1 >= len) return 0;
    unsigned char a = w[i + 1], b = i + 2 < len ? w[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// The end (in code points) of the GPT-2 pattern match starting at code point i of cls[0:n].
static size_t gpt2_match_end(const unsigned char *w, const int32_t *offs, const int32_t *cls, size_t i,
                             size_t n) {
    size_t bytes = (size_t)offs[n];
    int c = is_contraction(w, (size_t)offs[i], bytes);
    if (c) return i + (size_t)c; // ASCII: one code point per byte
    size_t j = (w[offs[i]] == ' ' && i + 1 < n && cls[i + 1] != CLS_SPACE) ? i + 1 : i;
    if (cls[j] != CLS_SPACE) {
        size_t k = j + 1;
        while (k < n && cls[k] == cls[j])
            k++;
        return k;
    }
    size_t k = i + 1;
    while (k < n && cls[k] == CLS_SPACE)
        k++;
    return (k == n || k - i == 1) ? k : k - 1;
}

static int bytelevel_words(const lf_tokenizer *tok, const unsigned char *text, size_t len, lf_tok_scratch *s,
                           lf_ivec *ids) {
    s->word.len = 0;
    if (tok->cfg.add_prefix_space && text[0] != ' ' &&
        lf_bbuf_append(&s->word, (const unsigned char *)" ", 1))
        return LF_ENOMEM;
    if (lf_bbuf_append(&s->word, text, len)) return LF_ENOMEM;
    const unsigned char *w = s->word.data;
    size_t wlen = s->word.len;
    // offs: byte offset of each code point (and the end); cls: its class
    s->offs.len = s->cls.len = 0;
    for (size_t i = 0; i < wlen;) {
        if (lf_ivec_push(&s->offs, (int32_t)i)) return LF_ENOMEM;
        uint32_t cp = lf_utf8_next(w, &i);
        if (lf_ivec_push(&s->cls, char_class(cp))) return LF_ENOMEM;
    }
    size_t n = s->cls.len;
    if (lf_ivec_push(&s->offs, (int32_t)wlen)) return LF_ENOMEM;
    int code = LF_OK;
    for (size_t i = 0; i < n && code == LF_OK;) {
        size_t end = gpt2_match_end(w, s->offs.data, s->cls.data, i, n);
        size_t a = (size_t)s->offs.data[i], b = (size_t)s->offs.data[end], mark = ids->len;
        i = end;
        if (lf_word_cache_get(&s->cache, w + a, b - a, ids)) continue;
        int32_t word[64];
        lf_ivec big = {0};
        int32_t *syms = word;
        if (b - a > 64) {
            if (lf_ivec_reserve(&big, b - a)) {
                code = LF_ENOMEM;
                break;
            }
            syms = big.data;
        }
        size_t m = 0;
        for (size_t k = a; k < b; k++)
            if (tok->byte_ids[w[k]] >= 0) syms[m++] = tok->byte_ids[w[k]];
        code = lf_bpe_word(tok, syms, m, s, ids);
        lf_ivec_free(&big);
        if (code == LF_OK)
            code = lf_word_cache_put(&s->cache, w + a, b - a, ids->data + mark, ids->len - mark);
    }
    return code;
}

static int metaspace_words(const lf_tokenizer *tok, const unsigned char *text, size_t len, int first,
                           lf_tok_scratch *s, lf_ivec *ids) {
    static const unsigned char meta[3] = {0xE2, 0x96, 0x81}; // U+2581 '▁'
    int starts_meta =
        text[0] == ' ' || (len >= 3 && text[0] == meta[0] && text[1] == meta[1] && text[2] == meta[2]);
    int prepend = tok->cfg.prepend_scheme == LF_PREPEND_ALWAYS ||
                  (tok->cfg.prepend_scheme == LF_PREPEND_FIRST && first);
    s->word.len = 0;
    if (lf_bbuf_reserve(&s->word, 3 * len + 3)) return LF_ENOMEM;
    if (prepend && !starts_meta) lf_bbuf_append(&s->word, meta, 3);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            lf_bbuf_append(&s->word, meta, 3);
        else
            s->word.data[s->word.len++] = text[i];
    }
    const unsigned char *w = s->word.data;
    size_t wlen = s->word.len;
    if (!tok->cfg.split && !tok->meta_boundaries) return lf_bpe_chars(tok, w, wlen, s, ids);
    // split: a word before each '▁'; else (one word, as tokenizers runs it) cut only where no merge
    // can cross: before a '▁' that follows another character
    size_t start = 0;
    for (size_t i = 1; i + 3 <= wlen; i++) {
        if (w[i] == meta[0] && w[i + 1] == meta[1] && w[i + 2] == meta[2] &&
            (tok->cfg.split || i < 3 || memcmp(w + i - 3, meta, 3) != 0)) {
            if (lf_bpe_chars(tok, w + start, i - start, s, ids)) return lf_error_code();
            start = i;
        }
    }
    return lf_bpe_chars(tok, w + start, wlen - start, s, ids);
}

static int model_word(const lf_tokenizer *tok, const unsigned char *word, size_t len, lf_tok_scratch *s,
                      lf_ivec *ids) {
    if (tok->cfg.model == LF_TOK_WORDPIECE) return lf_wordpiece_word(tok, word, len, s, ids);
    return lf_bpe_chars(tok, word, len, s, ids);
}

static int is_bert_punct(uint32_t cp) {
    if (cp < 128)
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
               (cp >= 123 && cp <= 126);
    return (lf_uni_flags(cp) & LF_UNI_PUNCT) != 0;
}

static int bert_words(const lf_tokenizer *tok, const unsigned char *text, size_t len, lf_tok_scratch *s,
                      lf_ivec *ids) {
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        size_t at = i;
        uint32_t cp = lf_utf8_next(text, &i);
        int space = (lf_uni_flags(cp) & LF_UNI_SPACE) != 0;
        if (!space && !is_bert_punct(cp)) continue;
        if (at > start && model_word(tok, text + start, at - start, s, ids)) return lf_error_code();
        if (!space && model_word(tok, text + at, i - at, s, ids)) return lf_error_code();
        start = i;
    }
    if (len > start) return model_word(tok, text + start, len - start, s, ids);
    return LF_OK;
}

// Appends the ids of the words of text[0:len] to ids. first: the piece starts the original text.
int lf_pretokenize(const lf_tokenizer *tok, const unsigned char *text, size_t len, int first,
                   lf_tok_scratch *s, lf_ivec *ids) {
    if (len == 0) return LF_OK;
    switch (tok->cfg.pre_tokenizer) {
    case LF_PRE_BYTELEVEL:
        return bytelevel_words(tok, text, len, s, ids);
    case LF_PRE_METASPACE:
        return metaspace_words(tok, text, len, first, s, ids);
    case LF_PRE_BERT:
        return bert_words(tok, text, len, s, ids);
    default:
        return model_word(tok, text, len, s, ids);
    }
}

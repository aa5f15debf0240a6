// Splits text around added tokens the way tokenizers' AddedVocabulary does: leftmost-longest
// matches, with lstrip / rstrip absorbing whitespace and single_word requiring word boundaries.
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

static int is_space_at(const unsigned char *s, size_t i) {
    size_t j = i;
    return lf_uni_flags(lf_utf8_next(s, &j)) & LF_UNI_SPACE;
}

// Start of the whitespace run that ends text[0:end].
static size_t trailing_space_start(const unsigned char *text, size_t end) {
    size_t i = end;
    while (i > 0) {
        size_t j = i - 1;
        while (j > 0 && (text[j] & 0xC0) == 0x80)
            j--;
        if (!is_space_at(text, j)) break;
        i = j;
    }
    return i;
}

// End of the whitespace run that starts at text[start].
static size_t leading_space_end(const unsigned char *text, size_t start, size_t len) {
    size_t i = start;
    while (i < len && is_space_at(text, i)) {
        size_t j = i;
        lf_utf8_next(text, &j);
        i = j;
    }
    return i;
}

static int is_word_cp(uint32_t cp) {
    return cp == '_' || (lf_uni_flags(cp) & (LF_UNI_LETTER | LF_UNI_NUMBER | LF_UNI_MN));
}

static int word_before(const unsigned char *text, size_t at) {
    if (at == 0) return 0;
    size_t j = at - 1;
    while (j > 0 && (text[j] & 0xC0) == 0x80)
        j--;
    return is_word_cp(lf_utf8_next(text, &j));
}

static int word_after(const unsigned char *text, size_t at, size_t len) {
    return at < len && is_word_cp(lf_utf8_next(text, &at));
}

// The longest added token of this stage that matches at text[i], or NULL.
static const lf_added_entry *match_at(const lf_tokenizer *tok, const unsigned char *text, size_t i,
                                      size_t len, int normalized) {
    const lf_added_entry *best = NULL;
    for (int k = 0; k < tok->n_added; k++) {
        const lf_added_entry *e = &tok->added[k];
        if (e->tok.normalized != normalized || e->match_len == 0 || e->match_len > len - i) continue;
        if (best && e->match_len <= best->match_len) continue;
        if (memcmp(text + i, e->match, e->match_len) == 0) best = e;
    }
    return best;
}

static int push_span(lf_ivec *spans, size_t start, size_t stop, int32_t id) {
    if (lf_ivec_push(spans, (int32_t)start) || lf_ivec_push(spans, (int32_t)stop) || lf_ivec_push(spans, id))
        return LF_ENOMEM;
    return LF_OK;
}

// spans: (start, stop, id) triples covering text in order; id -1 for plain text.
int lf_added_split(const lf_tokenizer *tok, const unsigned char *text, size_t len, int normalized,
                   lf_ivec *spans) {
    spans->len = 0;
    size_t done = 0, i = 0;
    while (i < len) {
        const lf_added_entry *e =
            tok->added_first[normalized][text[i]] ? match_at(tok, text, i, len, normalized) : NULL;
        if (e == NULL) {
            i++;
            continue;
        }
        size_t start = i, stop = i + e->match_len;
        if (e->tok.single_word && (word_before(text, start) || word_after(text, stop, len))) {
            i = stop;
            continue;
        }
        if (e->tok.lstrip) {
            size_t s = trailing_space_start(text, start);
            start = s > done ? s : done;
        }
        if (e->tok.rstrip) stop = leading_space_end(text, stop, len);
        if (done < start && push_span(spans, done, start, -1)) return LF_ENOMEM;
        if (push_span(spans, start, stop, e->tok.id)) return LF_ENOMEM;
        done = i = stop;
    }
    if (done < len && push_span(spans, done, len, -1)) return LF_ENOMEM;
    return LF_OK;
}

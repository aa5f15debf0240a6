// The BERT normalizer of tokenizers: clean text (drop NUL, U+FFFD and control characters, map
// whitespace to ' '), space out CJK ideographs, strip accents (NFD without Mn), lowercase.
#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

// BERT's CJK Unified Ideographs blocks (the definition of its tokenize_chinese_chars).
static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int put_cp(lf_bbuf *out, uint32_t cp) {
    unsigned char u[4];
    return lf_bbuf_append(out, u, (size_t)lf_utf8_put(cp, u)) ? LF_ENOMEM : LF_OK;
}

static int put_lower(const lf_tok_config *cfg, lf_bbuf *out, uint32_t cp) {
    int n = 0;
    const uint32_t *low = cfg->lowercase ? lf_uni_lower(cp, &n) : NULL;
    if (low == NULL) return put_cp(out, cp);
    for (int k = 0; k < n; k++)
        if (put_cp(out, low[k])) return LF_ENOMEM;
    return LF_OK;
}

// out: the normalized text (emptied first).
int lf_bert_normalize(const lf_tok_config *cfg, const unsigned char *text, size_t len, lf_bbuf *out) {
    out->len = 0;
    if (lf_bbuf_reserve(out, len + 16)) return LF_ENOMEM;
    for (size_t i = 0; i < len;) {
        uint32_t cp = lf_utf8_next(text, &i);
        unsigned flags = lf_uni_flags(cp);
        int tab_nl_cr = cp == '\t' || cp == '\n' || cp == '\r';
        if (cfg->clean_text) {
            if (cp == 0 || cp == 0xFFFD || ((flags & LF_UNI_OTHER) && !tab_nl_cr)) continue;
            if ((flags & LF_UNI_SPACE) || tab_nl_cr) cp = ' ';
        }
        int cjk = cfg->handle_chinese_chars && is_cjk(cp);
        if (cjk && put_cp(out, ' ')) return LF_ENOMEM;
        int n = 0;
        const uint32_t *stripped = cfg->strip_accents ? lf_uni_strip_accents(cp, &n) : NULL;
        if (stripped == NULL) {
            if (!(cfg->strip_accents && (flags & LF_UNI_MN)) && put_lower(cfg, out, cp)) return LF_ENOMEM;
        } else {
            for (int k = 0; k < n; k++)
                if (put_lower(cfg, out, stripped[k])) return LF_ENOMEM;
        }
        if (cjk && put_cp(out, ' ')) return LF_ENOMEM;
    }
    return LF_OK;
}

// Decoders: ids -> text as tokenizers' ByteLevel, Metaspace (Replace '▁' + ByteFallback + Fuse +
// Strip) and WordPiece decoders do.
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

const unsigned char *lf_tokenizer_token(const lf_tokenizer *tok, int32_t id, size_t *len) {
    *len = 0;
    if (id < 0 || id > tok->max_id || tok->id_kind[id] == 0) return NULL;
    if (tok->id_added[id] >= 0) {
        const lf_added_entry *e = &tok->added[tok->id_added[id]];
        *len = e->tok.len;
        return e->content;
    }
    return lf_vocab_token(&tok->vocab, id, len);
}

// GPT-2 bytes_to_unicode inverted: the byte of a code point, or -1.
static int gpt2_byte(uint32_t cp) {
    int printable = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
    if (printable) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    int rank = (int)cp - 256;
    for (int b = 0; b < 256; b++) {
        int p = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (!p && rank-- == 0) return b;
    }
    return -1;
}

static int bytelevel_token(const unsigned char *t, size_t len, lf_bbuf *out) {
    size_t start = out->len;
    for (size_t i = 0; i < len;) {
        int b = gpt2_byte(lf_utf8_next(t, &i));
        if (b < 0) { // a character outside the map: the token is kept as it is
            out->len = start;
            return lf_bbuf_append(out, t, len) ? LF_ENOMEM : LF_OK;
        }
        unsigned char c = (unsigned char)b;
        if (lf_bbuf_append(out, &c, 1)) return LF_ENOMEM;
    }
    return LF_OK;
}

static int byte_token_value(const unsigned char *t, size_t len) {
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        int c = t[k], d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// ByteFallback: a run of <0xNN> tokens is its bytes when they are valid UTF-8, else one U+FFFD each.
static int flush_bytes(lf_bbuf *out, const unsigned char *bytes, size_t n) {
    if (lf_utf8_valid_prefix(bytes, n) == n) return lf_bbuf_append(out, bytes, n) ? LF_ENOMEM : LF_OK;
    static const unsigned char replacement[3] = {0xEF, 0xBF, 0xBD};
    for (size_t i = 0; i < n; i++)
        if (lf_bbuf_append(out, replacement, 3)) return LF_ENOMEM;
    return LF_OK;
}

static int metaspace_token(const unsigned char *t, size_t len, lf_bbuf *out) {
    for (size_t i = 0; i < len; i++) {
        int meta = i + 3 <= len && t[i] == 0xE2 && t[i + 1] == 0x96 && t[i + 2] == 0x81;
        if (lf_bbuf_append(out, meta ? (const unsigned char *)" " : t + i, 1)) return LF_ENOMEM;
        i += meta ? 2 : 0;
    }
    return LF_OK;
}

static int wordpiece_token(const lf_tokenizer *tok, const unsigned char *t, size_t len, int first,
                           int cleanup, lf_bbuf *out) {
    size_t start = out->len;
    if (first) {
        // the first token is kept as it is
    } else if (tok->prefix_len && len >= tok->prefix_len && memcmp(t, tok->prefix, tok->prefix_len) == 0) {
        t += tok->prefix_len;
        len -= tok->prefix_len;
    } else if (lf_bbuf_append(out, (const unsigned char *)" ", 1)) {
        return LF_ENOMEM;
    }
    if (lf_bbuf_append(out, t, len)) return LF_ENOMEM;
    if (!cleanup) return LF_OK;
    // the decoder's cleanup, applied to this token's text
    static const char *const from[] = {" .",  " ?",      " !",  " ,",   " ' ", " n't",
                                       " 'm", " do not", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), w = start;
        for (size_t i = start; i < out->len;) {
            if (i + fl <= out->len && memcmp(out->data + i, from[r], fl) == 0) {
                memmove(out->data + w, to[r], tl); // tl <= fl: never overtakes the reader
                w += tl;
                i += fl;
            } else {
                out->data[w++] = out->data[i++];
            }
        }
        out->len = w;
    }
    return LF_OK;
}

static int decode_tokens(const lf_tokenizer *tok, const int64_t *ids, size_t n, const lf_decode_options *opt,
                         lf_bbuf *pending, lf_bbuf *out) {
    size_t emitted = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] > tok->max_id)
            return lf_error(LF_EINVAL, "decode: token id %lld is outside the vocabulary [0, %d]",
                            (long long)ids[i], tok->max_id);
        int32_t id = (int32_t)ids[i];
        size_t len;
        const unsigned char *t = lf_tokenizer_token(tok, id, &len);
        if (t == NULL || (opt->skip_special && tok->id_kind[id] == 3)) continue;
        int code = LF_OK;
        if (opt->decoder == LF_DEC_BYTELEVEL) {
            code = bytelevel_token(t, len, out);
        } else if (opt->decoder == LF_DEC_WORDPIECE) {
            code = wordpiece_token(tok, t, len, emitted == 0, opt->cleanup, out);
        } else {
            int b = byte_token_value(t, len);
            unsigned char byte = (unsigned char)b;
            if (b >= 0) {
                code = lf_bbuf_append(pending, &byte, 1) ? LF_ENOMEM : LF_OK;
            } else {
                code = flush_bytes(out, pending->data, pending->len);
                pending->len = 0;
                if (!code) code = metaspace_token(t, len, out);
            }
        }
        if (code) return code;
        emitted++;
    }
    return flush_bytes(out, pending->data, pending->len);
}

int lf_tokenizer_decode(const lf_tokenizer *tok, const int64_t *ids, size_t n, const lf_decode_options *opt,
                        lf_bbuf *out) {
    out->len = 0;
    lf_bbuf pending = {0};
    int code = decode_tokens(tok, ids, n, opt, &pending, out);
    lf_bbuf_free(&pending);
    if (code) return code;
    if (opt->decoder == LF_DEC_METASPACE && opt->strip_left && out->len > 0 && out->data[0] == ' ') {
        memmove(out->data, out->data + 1, out->len - 1);
        out->len--;
    }
    return LF_OK;
}

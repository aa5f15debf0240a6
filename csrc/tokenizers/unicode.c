#include "tokenizers/unicode.h"

#include "generated/unicode_tables.h"

size_t lf_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return i;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return i;
        i += len;
    }
    return n;
}

uint32_t lf_utf8_next(const unsigned char *s, size_t *i) {
    unsigned c = s[*i];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if ((c >> 5) == 6) {
        uint32_t cp = ((c & 0x1F) << 6) | (s[*i + 1] & 0x3F);
        *i += 2;
        return cp;
    }
    if ((c >> 4) == 14) {
        uint32_t cp = ((c & 0x0F) << 12) | ((s[*i + 1] & 0x3F) << 6) | (s[*i + 2] & 0x3F);
        *i += 3;
        return cp;
    }
    uint32_t cp =
        ((c & 0x07) << 18) | ((s[*i + 1] & 0x3F) << 12) | ((s[*i + 2] & 0x3F) << 6) | (s[*i + 3] & 0x3F);
    *i += 4;
    return cp;
}

int lf_utf8_put(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

unsigned lf_uni_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return lf_uni_flags_stage2[lf_uni_flags_stage1[cp >> 8] * 256u + (cp & 255u)];
}

// One lookup in a generated mapping table: stage1/stage2 give an index into offsets/data.
static const uint32_t *mapping(const uint16_t *stage1, const uint16_t *stage2, const uint32_t *offsets,
                               const uint32_t *data, uint32_t cp, int *len) {
    if (cp >= 0x110000) return NULL;
    unsigned k = stage2[stage1[cp >> 8] * 256u + (cp & 255u)];
    if (k == 0) return NULL;
    *len = (int)(offsets[k + 1] - offsets[k]);
    return data + offsets[k];
}

const uint32_t *lf_uni_lower(uint32_t cp, int *len) {
    return mapping(lf_uni_lower_stage1, lf_uni_lower_stage2, lf_uni_lower_offsets, lf_uni_lower_data, cp,
                   len);
}

const uint32_t *lf_uni_strip_accents(uint32_t cp, int *len) {
    return mapping(lf_uni_strip_stage1, lf_uni_strip_stage2, lf_uni_strip_offsets, lf_uni_strip_data, cp,
                   len);
}

const char *lf_unicode_version(void) { return LF_UNICODE_VERSION; }

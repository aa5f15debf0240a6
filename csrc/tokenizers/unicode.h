// UTF-8 decoding/encoding and the Unicode class lookups the tokenizers need. The tables are
// generated at build time from Python's unicodedata by tools/gen_unicode.py.
#pragma once

#include <stddef.h>
#include <stdint.h>

enum {
    LF_UNI_LETTER = 1, // L*
    LF_UNI_NUMBER = 2, // N*
    LF_UNI_SPACE = 4,  // White_Space
    LF_UNI_PUNCT = 8,  // P*
    LF_UNI_OTHER = 16, // Cc Cf Cs Co (not Cn: tokenizers' is_other keeps unassigned code points)
    LF_UNI_MN = 32,    // Mn (nonspacing mark)
};

// Returns the byte length of the valid UTF-8 prefix of s (n when all of s is valid).
size_t lf_utf8_valid_prefix(const unsigned char *s, size_t n);
// Decodes the code point at s[*i] of valid UTF-8 and advances *i.
uint32_t lf_utf8_next(const unsigned char *s, size_t *i);
// Writes cp as UTF-8 into out (4 bytes room) and returns its length.
int lf_utf8_put(uint32_t cp, unsigned char *out);

unsigned lf_uni_flags(uint32_t cp);
// Full lowercase mapping / canonical decomposition without nonspacing marks: NULL when the
// code point maps to itself, else *len code points.
const uint32_t *lf_uni_lower(uint32_t cp, int *len);
const uint32_t *lf_uni_strip_accents(uint32_t cp, int *len);
const char *lf_unicode_version(void);

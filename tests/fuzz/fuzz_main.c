// A bounded driver for fuzz_tokenizers.c where libFuzzer is not available (gcc):
//   fuzz_tokenizers ITERATIONS SEED      random inputs: raw random bytes, and random valid UTF-8
//                                        from mixed Unicode ranges and the special-token strings
//   fuzz_tokenizers FILE...              replays inputs (a libFuzzer corpus or crash file)
// Built with -fsanitize=address,undefined it is the sanitizer run of the tests.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizers/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_tokenizers_cleanup(void);

static uint64_t rng_state;

static uint32_t next_u32(void) { // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static uint32_t below(uint32_t n) { return next_u32() % n; }

// Code point ranges: ASCII, controls, Latin, combining marks, Greek/Cyrillic, Arabic, Devanagari,
// Thai, Hangul Jamo, general punctuation and spaces, CJK, Hangul, specials, emoji, tags, planes.
static const uint32_t ranges[][2] = {
    {0x20, 0x7E},       {0x00, 0x1F},       {0x80, 0x24F},      {0x300, 0x36F},   {0x370, 0x4FF},
    {0x600, 0x6FF},     {0x900, 0x97F},     {0xE00, 0xE7F},     {0x1100, 0x11FF}, {0x2000, 0x206F},
    {0x2580, 0x259F},   {0x3000, 0x30FF},   {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3}, {0xFE00, 0xFFFF},
    {0x1F300, 0x1FAFF}, {0xE0000, 0xE007F}, {0x10000, 0x10FFFF}};
static const char *const pieces[] = {"<s>",   "</s>",   "<mask>", "hello", "[CLS]",
                                     "[SEP]", "[MASK]", "Extra",  " ",     "  ",
                                     "\t",    "\n",     "'s",     "##",    "\xe2\x96\x81"};

static size_t random_utf8(unsigned char *out, size_t cap) {
    size_t n = 0, target = below(64) == 0 ? below((uint32_t)cap - 8) : below(200);
    while (n + 8 < cap && n < target) {
        if (below(8) == 0) {
            const char *p = pieces[below(sizeof pieces / sizeof pieces[0])];
            size_t len = strlen(p);
            memcpy(out + n, p, len);
            n += len;
            continue;
        }
        const uint32_t *r = ranges[below(sizeof ranges / sizeof ranges[0])];
        uint32_t cp = r[0] + below(r[1] - r[0] + 1);
        if (cp >= 0xD800 && cp < 0xE000) cp = 'x';
        n += (size_t)lf_utf8_put(cp, out + n);
    }
    return n;
}

static int replay(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_tokenizers: cannot open %s\n", path);
        return 1;
    }
    unsigned char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    if (buf) LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return buf == NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ITERATIONS [SEED] | %s FILE...\n", argv[0], argv[0]);
        return 2;
    }
    char *end;
    long iterations = strtol(argv[1], &end, 10);
    if (*end != '\0') { // file arguments
        int rc = 0;
        for (int i = 1; i < argc; i++)
            rc |= replay(argv[i]);
        fuzz_tokenizers_cleanup();
        return rc;
    }
    rng_state = (argc > 2 ? strtoull(argv[2], NULL, 10) : 1) * 0x9E3779B97F4A7C15ull + 1;
    enum { CAP = 120000 }; // up to ~100 kB texts
    unsigned char *buf = malloc(CAP);
    if (buf == NULL) return 1;
    for (long it = 0; it < iterations; it++) {
        size_t n = 3;
        for (int k = 0; k < 3; k++)
            buf[k] = (unsigned char)next_u32();
        if (it % 2 == 0) { // raw bytes: mostly invalid UTF-8
            size_t len = below(8) == 0 ? below(4096) : below(64);
            for (size_t k = 0; k < len; k++)
                buf[n++] = (unsigned char)next_u32();
        } else {
            n += random_utf8(buf + 3, CAP - 3);
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    free(buf);
    fuzz_tokenizers_cleanup();
    printf("fuzz_tokenizers: %ld inputs, no failure\n", iterations);
    return 0;
}

// libFuzzer target over the C tokenizer entry points (csrc/tokenizers/): byte-level BPE,
// SentencePiece BPE with byte fallback (two Metaspace variants) and WordPiece, each built
// once from a small vocabulary. An input is a header (family, truncation, options) and a text,
// optionally split into a pair; the text is raw bytes, so invalid UTF-8 reaches the encoder.
// Invariants checked (abort() on violation):
//   - encoding fails only with LF_EINVAL, and then only for invalid UTF-8 or a truncation
//     strategy that cannot be met;
//   - every id lies in [0, max_id]; with truncation the length respects max_length;
//   - encoding is deterministic: scratch kept across inputs (its word cache warm) and fresh
//     scratch give the same ids;
//   - decoding the ids with every decoder succeeds; decoding out-of-range ids fails cleanly.
// Build with clang -fsanitize=fuzzer,address, or with gcc and fuzz_main.c (a bounded driver).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_tokenizers: check failed at line %d: %s (%s)\n", __LINE__, #cond,          \
                    lf_error_message());                                                                     \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

enum { N_FAMILIES = 4, MAX_VOCAB = 1024 };

typedef struct {
    const char *tok[MAX_VOCAB];
    size_t len[MAX_VOCAB];
    int32_t id[MAX_VOCAB];
    size_t n;
    char store[MAX_VOCAB][16];
} vocab_builder;

static int32_t add_token(vocab_builder *v, const char *s, size_t len) {
    for (size_t i = 0; i < v->n; i++)
        if (v->len[i] == len && memcmp(v->tok[i], s, len) == 0) return v->id[i];
    CHECK(v->n < MAX_VOCAB && len < sizeof v->store[0]);
    memcpy(v->store[v->n], s, len);
    v->tok[v->n] = v->store[v->n];
    v->len[v->n] = len;
    v->id[v->n] = (int32_t)v->n;
    return (int32_t)v->n++;
}

static int32_t add_str(vocab_builder *v, const char *s) { return add_token(v, s, strlen(s)); }

// BPE merges given as "left right" strings; the merged token joins the vocabulary.
static void add_merges(vocab_builder *v, const char *const *merges, size_t n, const char **left,
                       size_t *left_len, const char **right, size_t *right_len) {
    for (size_t i = 0; i < n; i++) {
        const char *space = strchr(merges[i], ' ');
        left[i] = merges[i];
        left_len[i] = (size_t)(space - merges[i]);
        right[i] = space + 1;
        right_len[i] = strlen(space + 1);
        char both[32];
        memcpy(both, left[i], left_len[i]);
        memcpy(both + left_len[i], right[i], right_len[i]);
        add_token(v, both, left_len[i] + right_len[i]);
    }
}

static lf_tokenizer *tokenizers[N_FAMILIES];
static lf_tok_scratch warm_scratch[N_FAMILIES]; // kept across inputs, as a batch keeps it across texts
static lf_decode_options decoders[N_FAMILIES];

static lf_added_token added(const char *s, int32_t id, int special, int lstrip, int rstrip, int single) {
    lf_added_token t = {s, strlen(s), id, special, lstrip, rstrip, single, !special};
    return t;
}

static lf_tokenizer *build_bytelevel(void) {
    static vocab_builder v;
    // GPT-2 bytes_to_unicode: each byte's character
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        unsigned char u[4];
        int n = lf_utf8_put(printable ? (uint32_t)b : 256u + (uint32_t)shifted++, u);
        add_token(&v, (const char *)u, (size_t)n);
    }
    static const char *const merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he",      "i n", "in g", "e r",
                                         "\xc4\xa0 a", "o n", "\xc4\xa0 \xc4\xa0", "' s", "r e"};
    enum { NM = sizeof merges / sizeof merges[0] };
    static const char *l[NM], *r[NM];
    static size_t ll[NM], rl[NM];
    add_merges(&v, merges, NM, l, ll, r, rl);
    int32_t s = add_str(&v, "<s>"), e = add_str(&v, "</s>"), m = add_str(&v, "<mask>");
    lf_added_token at[] = {added("<s>", s, 1, 0, 0, 0), added("</s>", e, 1, 0, 0, 0),
                           added("<mask>", m, 1, 1, 0, 0), added("hello", (int32_t)v.n + 5, 0, 0, 1, 1)};
    int32_t pre_ids[] = {s}, post_ids[] = {e}, mid_ids[] = {e, e}, zeros[] = {0, 0};
    lf_tok_template t = {{pre_ids, zeros, 1}, {post_ids, zeros, 1}, {pre_ids, zeros, 1},
                         {mid_ids, zeros, 2}, {post_ids, zeros, 1}, 0};
    lf_tok_config cfg = {
        .model = LF_TOK_BPE, .pre_tokenizer = LF_PRE_BYTELEVEL, .add_prefix_space = 1, .unk_id = -1};
    return lf_tokenizer_create(&cfg, v.tok, v.len, v.id, v.n, l, ll, r, rl, NM, at, 4, &t);
}

static lf_tokenizer *build_spm(int split, int prepend) {
    static vocab_builder vs[2];
    vocab_builder *v = &vs[split];
    int32_t unk = add_str(v, "<unk>"), s = add_str(v, "<s>"), e = add_str(v, "</s>");
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        add_str(v, name);
    }
    for (const char *c = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'"; *c; c++)
        add_token(v, c, 1);
    add_str(v, "\xe2\x96\x81"); // '▁'
    add_str(v, "\xc3\xa9");     // 'é'
    add_str(v, "\xe4\xb8\xad"); // '中'
    static const char *const merges[] = {
        "\xe2\x96\x81 t", "h e", "\xe2\x96\x81t he", "i n", "in g", "\xe2\x96\x81 \xe2\x96\x81",
        "\xe2\x96\x81 a", "e r"};
    enum { NM = sizeof merges / sizeof merges[0] };
    static const char *l[2][NM], *r[2][NM];
    static size_t ll[2][NM], rl[2][NM];
    add_merges(v, merges, NM, l[split], ll[split], r[split], rl[split]);
    lf_added_token at[] = {added("<unk>", unk, 1, 0, 0, 0), added("<s>", s, 1, 0, 0, 0),
                           added("</s>", e, 1, 0, 0, 0)};
    int32_t pre_ids[] = {s}, zeros[] = {0, 0}, mid_ids[] = {s}, types_b[] = {1};
    lf_tok_template t = {{pre_ids, zeros, 1},   {NULL, NULL, 0}, {pre_ids, zeros, 1},
                         {mid_ids, types_b, 1}, {NULL, NULL, 0}, 1};
    lf_tok_config cfg = {.model = LF_TOK_BPE,
                         .pre_tokenizer = LF_PRE_METASPACE,
                         .prepend_scheme = prepend,
                         .split = split,
                         .byte_fallback = 1,
                         .fuse_unk = 1,
                         .unk_id = unk};
    return lf_tokenizer_create(&cfg, v->tok, v->len, v->id, v->n, l[split], ll[split], r[split], rl[split],
                               NM, at, 3, &t);
}

static lf_tokenizer *build_wordpiece(void) {
    static vocab_builder v;
    int32_t pad = add_str(&v, "[PAD]"), unk = add_str(&v, "[UNK]"), cls = add_str(&v, "[CLS]");
    int32_t sep = add_str(&v, "[SEP]"), mask = add_str(&v, "[MASK]");
    (void)pad;
    for (const char *c = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'#"; *c; c++) {
        char cont[4] = {'#', '#', *c, 0};
        add_token(&v, c, 1);
        add_str(&v, cont);
    }
    static const char *const words[] = {"the", "##ing", "##er", "in", "hello", "world", "\xe4\xb8\xad"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        add_str(&v, words[i]);
    lf_added_token at[] = {added("[PAD]", pad, 1, 0, 0, 0),   added("[UNK]", unk, 1, 0, 0, 0),
                           added("[CLS]", cls, 1, 0, 0, 0),   added("[SEP]", sep, 1, 0, 0, 0),
                           added("[MASK]", mask, 1, 1, 0, 0), added("Extra", (int32_t)v.n, 0, 0, 0, 0)};
    int32_t pre_ids[] = {cls}, post_ids[] = {sep}, zeros[] = {0, 0}, ones[] = {1};
    lf_tok_template t = {{pre_ids, zeros, 1},  {post_ids, zeros, 1}, {pre_ids, zeros, 1},
                         {post_ids, zeros, 1}, {post_ids, ones, 1},  1};
    lf_tok_config cfg = {.model = LF_TOK_WORDPIECE,
                         .pre_tokenizer = LF_PRE_BERT,
                         .bert_normalizer = 1,
                         .clean_text = 1,
                         .handle_chinese_chars = 1,
                         .strip_accents = 1,
                         .lowercase = 1,
                         .unk_id = unk,
                         .max_input_chars_per_word = 12,
                         .subword_prefix = "##"};
    return lf_tokenizer_create(&cfg, v.tok, v.len, v.id, v.n, NULL, NULL, NULL, NULL, 0, at, 6, &t);
}

static void init(void) {
    if (tokenizers[0]) return;
    tokenizers[0] = build_bytelevel();
    tokenizers[1] = build_spm(0, LF_PREPEND_FIRST);
    tokenizers[2] = build_spm(1, LF_PREPEND_ALWAYS);
    tokenizers[3] = build_wordpiece();
    for (int i = 0; i < N_FAMILIES; i++)
        CHECK(tokenizers[i] != NULL);
    decoders[0] = (lf_decode_options){.decoder = LF_DEC_BYTELEVEL};
    decoders[1] = (lf_decode_options){.decoder = LF_DEC_METASPACE, .strip_left = 1};
    decoders[2] = (lf_decode_options){.decoder = LF_DEC_METASPACE, .strip_left = 0};
    decoders[3] = (lf_decode_options){.decoder = LF_DEC_WORDPIECE, .cleanup = 1};
}

static void check_decode(const lf_tokenizer *tok, const lf_ivec *ids, int skip) {
    int64_t *wide = malloc((ids->len + 2) * sizeof *wide);
    CHECK(wide != NULL);
    for (size_t i = 0; i < ids->len; i++)
        wide[i] = ids->data[i];
    lf_bbuf out = {0};
    for (int d = 0; d < N_FAMILIES; d++) {
        lf_decode_options opt = decoders[d];
        opt.skip_special = skip;
        CHECK(lf_tokenizer_decode(tok, wide, ids->len, &opt, &out) == LF_OK);
    }
    wide[ids->len] = tok->max_id + 1 + (int64_t)ids->len; // out of range: a clean error
    CHECK(lf_tokenizer_decode(tok, wide, ids->len + 1, &decoders[0], &out) == LF_EINVAL);
    lf_error_clear();
    lf_bbuf_free(&out);
    free(wide);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size < 3) return 0;
    const lf_tokenizer *tok = tokenizers[data[0] % N_FAMILIES];
    lf_tok_scratch *warm = &warm_scratch[data[0] % N_FAMILIES];
    static const int64_t lengths[] = {-1, 0, 1, 2, 3, 5, 16, 512};
    lf_encode_options opt = {.add_special_tokens = (data[0] >> 2) & 1,
                             .max_length = lengths[(data[0] >> 3) & 7],
                             .strategy = data[1] % 3,
                             .truncate_left = (data[1] >> 2) & 1};
    int with_pair = (data[1] >> 3) & 1;
    const unsigned char *text = data + 3, *pair = NULL;
    size_t len = size - 3, pair_len = 0;
    if (with_pair) {
        size_t cut = len ? data[2] % (len + 1) : 0;
        pair = text + cut;
        pair_len = len - cut;
        len = cut;
    }
    lf_tok_scratch fresh = {0};
    lf_ivec ids = {0}, types = {0}, ids2 = {0}, types2 = {0};
    int rc = lf_tokenizer_encode(tok, text, len, pair, pair_len, &opt, warm, &ids, &types);
    int valid =
        lf_utf8_valid_prefix(text, len) == len && (!pair || lf_utf8_valid_prefix(pair, pair_len) == pair_len);
    if (rc != LF_OK) {
        CHECK(rc == LF_EINVAL);
        CHECK(!valid || (opt.max_length >= 0 && opt.strategy != LF_TRUNC_LONGEST_FIRST));
        lf_error_clear();
    } else {
        CHECK(valid);
        CHECK(ids.len == types.len);
        for (size_t i = 0; i < ids.len; i++)
            CHECK(ids.data[i] >= 0 && ids.data[i] <= tok->max_id);
        int32_t n_special = 2 + (pair ? 2 : 0); // the largest template of the four families
        if (opt.max_length >= n_special) CHECK((int64_t)ids.len <= opt.max_length);
        // the warm scratch carries the word cache of earlier inputs: a fresh one must agree
        CHECK(lf_tokenizer_encode(tok, text, len, pair, pair_len, &opt, &fresh, &ids2, &types2) == LF_OK);
        CHECK(ids2.len == ids.len &&
              (ids.len == 0 || memcmp(ids2.data, ids.data, ids.len * sizeof *ids.data) == 0));
        check_decode(tok, &ids, data[2] & 1);
    }
    lf_tok_scratch_free(&fresh);
    lf_ivec_free(&ids);
    lf_ivec_free(&types);
    lf_ivec_free(&ids2);
    lf_ivec_free(&types2);
    return 0;
}

// Frees the tokenizers (called by the bounded driver so LeakSanitizer sees a clean exit).
void fuzz_tokenizers_cleanup(void) {
    for (int i = 0; i < N_FAMILIES; i++) {
        lf_tok_scratch_free(&warm_scratch[i]);
        lf_tokenizer_free(tokenizers[i]);
        tokenizers[i] = NULL;
    }
}

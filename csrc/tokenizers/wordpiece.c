// The WordPiece model: greedy longest-match-first with the continuation prefix ("##"); a word
// longer than max_input_chars_per_word, or one that cannot be covered, is the unknown token.
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"

static int push_unk(const lf_tokenizer *tok, lf_ivec *ids) {
    if (tok->cfg.unk_id < 0)
        return lf_error(LF_EINVAL, "WordPiece: the unknown token is not in the vocabulary");
    return lf_ivec_push(ids, tok->cfg.unk_id) ? LF_ENOMEM : LF_OK;
}

int lf_wordpiece_word(const lf_tokenizer *tok, const unsigned char *word, size_t len, lf_tok_scratch *s,
                      lf_ivec *ids) {
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        chars += (word[i] & 0xC0) != 0x80;
    if (chars > (size_t)tok->cfg.max_input_chars_per_word) return push_unk(tok, ids);
    if (lf_bbuf_reserve(&s->word, tok->prefix_len + len)) return LF_ENOMEM;
    memcpy(s->word.data, tok->prefix, tok->prefix_len);
    memcpy(s->word.data + tok->prefix_len, word, len);
    size_t mark = ids->len;
    for (size_t start = 0; start < len;) {
        const unsigned char *cand = word; // word[start:end], after the prefix when start > 0
        if (start > 0) {
            memcpy(s->word.data + start, tok->prefix, tok->prefix_len); // lands just before word[start:]
            cand = s->word.data + start;
        }
        size_t extra = start > 0 ? tok->prefix_len : 0, end = len;
        int32_t id = -1;
        while (end > start) {
            id = lf_vocab_find(&tok->vocab, cand, extra + end - start);
            if (id >= 0) break;
            do
                end--;
            while (end > start && (word[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            ids->len = mark;
            return push_unk(tok, ids);
        }
        if (lf_ivec_push(ids, id)) return LF_ENOMEM;
        start = end;
    }
    return LF_OK;
}

"""Helpers of the tokenizer parity tests: the adversarial corpus, random Unicode text, and the
comparison of a lorafast call with the same transformers call."""

import functools
import json
import pathlib
import random
import unicodedata

import numpy as np
import pytest

DATA = pathlib.Path(__file__).resolve().parent / "data"


def adversarial_corpus():
    """tests/data/tokenizer_adversarial.json: emoji, CJK, RTL scripts, combining marks, Unicode
    spaces, whitespace runs, URLs, mentions, numbers, contractions, long words, special tokens."""
    with open(DATA / "tokenizer_adversarial.json", encoding="utf-8") as f:
        return json.load(f)


# Code points whose BERT handling depends on the Unicode version: tokenizers' BERT normalizer and
# pre-tokenizer classify marks, punctuation and format characters with the unicode_categories
# crate (Unicode 8.0), lorafast with Python's unicodedata. These four changed category since;
# characters that are M*/P*/Cf now but were unassigned in Unicode 3.2 (the one older table Python
# ships) are left out of the random BERT texts as well.
CATEGORY_CHANGED = {0x166D, 0x1734, 0x1885, 0x1886}


def version_dependent_for_bert(cp):
    c = chr(cp)
    if cp in CATEGORY_CHANGED:
        return True
    cat = unicodedata.category(c)
    return (cat[0] in "MP" or cat == "Cf") and unicodedata.ucd_3_2_0.category(c) == "Cn"


@functools.lru_cache(maxsize=None)
def assigned_code_points(bert=False):
    """Every code point assigned in Python's Unicode version (no surrogates), as a tuple."""
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000 or unicodedata.category(chr(cp)) == "Cn":
            continue
        if bert and version_dependent_for_bert(cp):
            continue
        out.append(cp)
    return tuple(out)


SPECIAL_PIECES = ["<s>", "</s>", "<unk>", "<pad>", "<mask>", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "[PAD]",
                  " ", "  ", "\t", "\n", "\r\n", "'s", "'ll", "'S", "\u2581", "##", "https://t.co/x", "@a", "#b",
                  "1,000", "don't"]
RANGES = [(0x20, 0x7E), (0x20, 0x7E), (0x0, 0x1F), (0x80, 0x2FF), (0x300, 0x36F), (0x370, 0x4FF), (0x590, 0x6FF),
          (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x2BFF), (0x3000, 0x30FF),
          (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFE00, 0xFFEF), (0x1F300, 0x1FAFF), (0xE0000, 0xE007F),
          (0x10000, 0x10FFFF)]


def random_texts(n, seed, allowed):
    """n random strings mixing Unicode ranges and special pieces, drawn only from `allowed`
    code points (a set)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        out = []
        for _ in range(rng.randint(0, 40)):
            if rng.random() < 0.12:
                out.append(rng.choice(SPECIAL_PIECES))
                continue
            lo, hi = rng.choice(RANGES)
            for _ in range(8):
                cp = rng.randint(lo, hi)
                if cp in allowed:
                    out.append(chr(cp))
                    break
        texts.append("".join(out))
    return texts


def assert_same_encoding(expected, got, texts, what, keys=("input_ids", "attention_mask")):
    """expected: the transformers BatchEncoding, got: lorafast's; compares keys row by row."""
    for key in keys:
        if key not in expected:
            assert key not in got, f"{what}: lorafast returns {key}, transformers does not"
            continue
        a, b = expected[key], got[key]
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            assert isinstance(b, np.ndarray) and isinstance(a, np.ndarray), f"{what}: {key} types differ"
            assert a.shape == b.shape, f"{what}: {key} shape {b.shape}, transformers {a.shape}"
            bad = np.nonzero((a != b).any(axis=1))[0] if a.ndim == 2 else ([0] if (a != b).any() else [])
            if len(bad):
                i = int(bad[0])
                raise AssertionError(f"{what}: {key} differs in {len(bad)} rows, first {i} {texts[i]!r}:\n"
                                     f"  transformers {a[i].tolist()}\n  lorafast     {b[i].tolist()}")
            continue
        if texts is None or isinstance(a, list) and a and not isinstance(a[0], list):
            assert a == b, f"{what}: {key}\n  transformers {a}\n  lorafast     {b}"
            continue
        assert len(a) == len(b), f"{what}: {key} has {len(b)} rows, transformers {len(a)}"
        bad = [i for i in range(len(a)) if a[i] != b[i]]
        if bad:
            i = bad[0]
            raise AssertionError(f"{what}: {key} differs in {len(bad)} of {len(a)} texts, first {i} {texts[i]!r}:\n"
                                 f"  transformers {a[i]}\n  lorafast     {b[i]}")


CALLS = [
    {"padding": True},
    {"padding": "longest", "return_tensors": "np"},
    {"padding": "max_length", "max_length": 64, "truncation": True, "return_tensors": "np"},
    {"padding": True, "pad_to_multiple_of": 8},
    {"padding": True, "padding_side": "left"},
    {"return_attention_mask": False},
    {"return_token_type_ids": True},
    {"add_special_tokens": False, "truncation": True, "max_length": 8},
    {"truncation": "longest_first", "max_length": 24, "padding": True, "return_tensors": "np"},
    {"truncation": "only_second", "max_length": 200},
    {"truncation": True, "max_length": 3},  # below the number of special tokens of a pair
    {"max_length": 12},  # truncates, as transformers does when only max_length is given
    {"padding": "max_length"},  # to model_max_length, or no padding when there is none
    {"padding": "max_length", "truncation": True, "pad_to_multiple_of": 4},
    {"padding": "do_not_pad", "max_length": 12},
]


def check_call_options(hf, tok, texts, what):
    """Every call option of CALLS on pairs, batches and one pair, against transformers."""
    a, b = texts[:60], texts[60:120]
    keys = ("input_ids", "attention_mask", "token_type_ids")
    for call in CALLS:
        assert_same_encoding(hf(a, b, **call), tok(a, b, **call), a, f"{what} pairs {call}", keys=keys)
        assert_same_encoding(hf(a, **call), tok(a, **call), a, f"{what} {call}", keys=keys)
        assert_same_encoding(hf(a[5], b[5], **call), tok(a[5], b[5], **call), None, f"{what} one pair {call}",
                             keys=keys)
    # truncation to a length that is not a multiple of pad_to_multiple_of is an error in both
    bad = {"padding": True, "truncation": True, "max_length": 10, "pad_to_multiple_of": 4}
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        hf(a, **bad)
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        tok(a, **bad)
    # a truncation that cannot be met is an error in both
    with pytest.raises(Exception, match="too short"):
        hf(a, b, truncation="only_first", max_length=5)
    with pytest.raises(ValueError, match="too short"):
        tok(a, b, truncation="only_first", max_length=5)


def check_decode_and_vocabulary(hf, tok, texts, what):
    """decode / batch_decode / convert_* / tokenize / len / vocab_size / special tokens."""
    ids = hf(texts)["input_ids"]
    for skip in (False, True):
        assert tok.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
        assert tok.decode(ids[3], skip_special_tokens=skip) == hf.decode(ids[3], skip_special_tokens=skip)
        assert tok.decode(np.array(ids[4]), skip_special_tokens=skip) == hf.decode(ids[4], skip_special_tokens=skip)
    tokens = [hf.convert_ids_to_tokens(row) for row in ids]
    assert [tok.convert_ids_to_tokens(row) for row in ids] == tokens
    assert [tok.convert_ids_to_tokens(row, skip_special_tokens=True) for row in ids] == \
        [hf.convert_ids_to_tokens(row, skip_special_tokens=True) for row in ids]
    assert tok.convert_ids_to_tokens(ids[0][1]) == hf.convert_ids_to_tokens(ids[0][1])
    assert [tok.convert_tokens_to_ids(t) for t in tokens] == ids
    assert tok.convert_tokens_to_ids("no-such-token-\u2603") == hf.convert_tokens_to_ids("no-such-token-\u2603")
    assert tok.convert_tokens_to_ids(tokens[0][1]) == hf.convert_tokens_to_ids(tokens[0][1])
    assert tok.tokenize("Hello world, it's 2015!") == hf.tokenize("Hello world, it's 2015!")
    assert tok.encode("Hello world") == hf.encode("Hello world")
    assert (len(tok), tok.vocab_size) == (len(hf), hf.vocab_size), what
    assert tok.get_vocab() == hf.get_vocab(), what
    assert tok.all_special_tokens == hf.all_special_tokens, what
    assert tok.all_special_ids == hf.all_special_ids, what
    for attr in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                 "bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id", "cls_token_id", "sep_token_id",
                 "model_max_length", "padding_side", "model_input_names"):
        assert getattr(tok, attr) == getattr(hf, attr), (what, attr)

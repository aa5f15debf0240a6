"""Helpers of the tokenizer parity tests: the adversarial corpus, random Unicode text, and the
comparison of a lorafast call with the same transformers call."""

import functools
import json
import pathlib
import random
import unicodedata

import numpy as np

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

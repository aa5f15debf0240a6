"""lorafast.AutoTokenizer against the pinned transformers on the four shared tokenizers
(roberta-large, Llama-2-7b-hf, Mistral-7B-v0.1, all-MiniLM-L6-v2): every disaster tweet, the
adversarial corpus, random Unicode, every assigned code point, legacy files, call semantics."""

import csv
import shutil

import numpy as np
import pytest
import transformers
from tokenizer_parity import (adversarial_corpus, assert_same_encoding, assigned_code_points,
                              check_call_options, check_decode_and_vocabulary, random_texts)

import lorafast as lf

transformers.logging.set_verbosity_error()

MODELS = ["roberta-large", "meta-llama--Llama-2-7b-hf", "mistralai--Mistral-7B-v0.1",
          "sentence-transformers--all-MiniLM-L6-v2"]
_loaded = {}


def load_pair(shared, name, **kwargs):
    """(transformers tokenizer, lorafast tokenizer) of a shared model folder, cached per kwargs."""
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _loaded:
        folder = shared / "models" / name
        _loaded[key] = (transformers.AutoTokenizer.from_pretrained(folder, **kwargs),
                        lf.AutoTokenizer.from_pretrained(folder, **kwargs))
    return _loaded[key]


@pytest.fixture(scope="module")
def tweets(shared):
    texts = []
    for name in ("train.csv", "test.csv"):
        with open(shared / "data" / "disaster_tweets" / name, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    assert len(texts) == 10876
    return texts


@pytest.mark.parametrize("max_length", [512, 16])
@pytest.mark.parametrize("name", MODELS)
def test_tweets_parity(shared, tweets, name, max_length):
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    expected = hf(tweets, truncation=True, max_length=max_length)
    assert_same_encoding(expected, tok(tweets, truncation=True, max_length=max_length), tweets,
                         f"{name} max_length={max_length}")


def test_notebook_example(shared):
    _, tok = load_pair(shared, "roberta-large", add_prefix_space=True)
    enc = tok("my worst fear. https://t.co/iH8UDz8mq3")
    assert enc["input_ids"] == [0, 127, 2373, 2490, 4, 1205, 640, 90, 4, 876, 73, 118, 725, 398, 13083, 329,
                                398, 119, 1343, 246, 2]
    assert enc["attention_mask"] == [1] * 21


PREFIX_SPACE = [{"add_prefix_space": True}, {"add_prefix_space": False}, {}]


@pytest.mark.parametrize("kwargs", PREFIX_SPACE, ids=["prefix", "no-prefix", "default"])
@pytest.mark.parametrize("name", MODELS)
def test_adversarial_parity(shared, name, kwargs):
    hf, tok = load_pair(shared, name, **kwargs)
    texts = adversarial_corpus()
    pairs = texts[1:] + texts[:1]
    for call in ({}, {"truncation": True, "max_length": 16}, {"truncation": True, "max_length": 512}):
        what = f"{name} {kwargs} {call}"
        assert_same_encoding(hf(texts, **call), tok(texts, **call), texts, what)
        assert_same_encoding(hf(texts, pairs, **call), tok(texts, pairs, **call), texts, what + " pairs",
                             keys=("input_ids", "attention_mask", "token_type_ids"))
        for text in texts[::7]:  # single texts go through the same path as batches
            assert hf(text, **call)["input_ids"] == tok(text, **call)["input_ids"], (what, text)


@pytest.mark.parametrize("name", MODELS)
def test_random_unicode_parity(shared, name):
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    allowed = set(assigned_code_points(bert="MiniLM" in name))
    texts = random_texts(3000, seed=MODELS.index(name), allowed=allowed)
    assert_same_encoding(hf(texts), tok(texts), texts, f"{name} random Unicode")


@pytest.mark.parametrize("name", ["roberta-large", "meta-llama--Llama-2-7b-hf",
                                  "sentence-transformers--all-MiniLM-L6-v2"])
def test_every_code_point(shared, name):
    """Each assigned code point after a letter and before a space, once per family
    (Mistral has Llama's pipeline; its vocabulary is covered by the tests above)."""
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    cps = assigned_code_points(bert="MiniLM" in name)
    texts = ["".join(f"a{chr(c)} " for c in cps[i:i + 16]) for i in range(0, len(cps), 16)]
    assert_same_encoding(hf(texts, add_special_tokens=False), tok(texts, add_special_tokens=False), texts,
                         f"{name} code points")


LEGACY = {
    "roberta-large": ["vocab.json", "merges.txt", "tokenizer_config.json", "config.json"],
    "meta-llama--Llama-2-7b-hf": ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"],
    "sentence-transformers--all-MiniLM-L6-v2": ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"],
}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_files(shared, tweets, tmp_path, name):
    """Without tokenizer.json: vocab.json + merges.txt, tokenizer.model (protobuf) alone, vocab.txt;
    transformers reads the same folder (it needs sentencepiece + protobuf for tokenizer.model)."""
    for f in LEGACY[name]:
        shutil.copy(shared / "models" / name / f, tmp_path / f)
    for kwargs, texts in (({"add_prefix_space": True}, tweets + adversarial_corpus()), ({}, adversarial_corpus())):
        hf = transformers.AutoTokenizer.from_pretrained(tmp_path, **kwargs)
        tok = lf.AutoTokenizer.from_pretrained(tmp_path, **kwargs)
        assert_same_encoding(hf(texts, truncation=True, max_length=512), tok(texts, truncation=True, max_length=512),
                             texts, f"{name} legacy files {kwargs}")
        assert (len(tok), tok.vocab_size, tok.all_special_ids) == (len(hf), hf.vocab_size, hf.all_special_ids)


@pytest.mark.parametrize("name", ["meta-llama--Llama-2-7b-hf", "mistralai--Mistral-7B-v0.1"])
def test_pad_token_is_eos(shared, name):
    """The notebook sets pad = eos for Llama and Mistral, then pads batches."""
    texts = adversarial_corpus()[:40]
    hf = transformers.AutoTokenizer.from_pretrained(shared / "models" / name, add_prefix_space=True)
    tok = lf.AutoTokenizer.from_pretrained(shared / "models" / name, add_prefix_space=True)
    assert tok.pad_token is None and tok.pad_token_id is None
    with pytest.raises(ValueError, match="padding token"):
        tok(texts, padding=True)
    hf.pad_token = hf.eos_token
    tok.pad_token = tok.eos_token
    assert (tok.pad_token, tok.pad_token_id) == (hf.pad_token, hf.pad_token_id) == ("</s>", 2)
    for call in ({"padding": True}, {"padding": "max_length", "max_length": 48, "truncation": True},
                 {"padding": True, "return_tensors": "np"}, {"padding": True, "padding_side": "left"}):
        assert_same_encoding(hf(texts, **call), tok(texts, **call), texts, f"{name} pad=eos {call}")
    hf.pad_token_id = 0
    tok.pad_token_id = 0
    assert (tok.pad_token, tok.pad_token_id) == (hf.pad_token, hf.pad_token_id) == ("<unk>", 0)
    assert_same_encoding(hf(texts, padding=True), tok(texts, padding=True), texts, f"{name} pad_token_id=0")


@pytest.mark.parametrize("name", MODELS)
def test_call_options(shared, name):
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    if hf.pad_token is None:
        hf, tok = load_pair(shared, name, add_prefix_space=True, pad_token="</s>")
    check_call_options(hf, tok, adversarial_corpus(), name)


@pytest.mark.parametrize("name", MODELS)
def test_decode_and_vocabulary(shared, name):
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    check_decode_and_vocabulary(hf, tok, adversarial_corpus(), name)


@pytest.mark.parametrize("name", MODELS)
def test_odd_inputs(shared, name):
    """Empty strings, NUL, 100 kB texts: as transformers. Lone surrogates and bytes: a clear error."""
    hf, tok = load_pair(shared, name, add_prefix_space=True)
    texts = ["", "\x00", "a\x00b", "word " * 20000, "x" * 100000, "\U0001F600" * 25000, "\t\n" * 50000,
             "é" * 50000, "中" * 33000]
    for call in ({}, {"truncation": True, "max_length": 512}):
        assert_same_encoding(hf(texts, **call), tok(texts, **call), [t[:40] for t in texts], f"{name} odd {call}")
    for bad in ("a\ud800b", ["ok", "\udfff"]):
        with pytest.raises(Exception):
            hf(bad)
        with pytest.raises(ValueError, match="surrogate"):
            tok(bad)
    with pytest.raises(ValueError, match="text"):
        tok(b"\xff\xfe bytes")
    with pytest.raises(ValueError, match="text"):
        tok(["a", None])
    with pytest.raises(ValueError, match="text_pair"):
        tok("a", text_pair=3)
    assert tok([])["input_ids"] == []

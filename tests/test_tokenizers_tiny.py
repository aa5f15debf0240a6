"""Self-contained tokenizer tests (no ../shared): tiny byte-level BPE, WordPiece, SentencePiece
BPE and Metaspace BPE vocabularies trained here with the `tokenizers` and `sentencepiece`
packages, saved as tokenizer.json / legacy files, then read by transformers and lorafast and
compared; plus the errors that bad files, bad arguments and bad ids raise."""

import json
import random
import shutil
import threading

import numpy as np
import pytest
import sentencepiece
import transformers
from tokenizer_parity import (adversarial_corpus, assert_same_encoding, assigned_code_points,
                              check_call_options, check_decode_and_vocabulary, random_texts)
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import lorafast as lf
from lorafast._backend import _C

transformers.logging.set_verbosity_error()

WORDS = ("the a fire flood earthquake storm people city road house car police news report help is are was "
         "were not don't can't it's we're they'll I'm burning emergency evacuation rescue wildfire tornado "
         "hurricane damage crash accident bomb siren ambulance hospital 2015 100 #news @user http://t.co "
         "Ångström café naïve 東京 地震 مرحبا שלום नमस्ते 😀 🔥").split()


def corpus():
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(400)]
    return sentences + [t for t in adversarial_corpus() if 0 < len(t) < 1000]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def train_bytelevel():
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.post_processor = processors.RobertaProcessing(("</s>", tk.token_to_id("</s>")), ("<s>", tk.token_to_id("<s>")))
    return tk


def train_wordpiece(normalizer, max_chars=100):
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=max_chars))
    tk.normalizer = normalizer
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(corpus(), trainers.WordPieceTrainer(
        vocab_size=500, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    tk.post_processor = processors.BertProcessing(("[SEP]", tk.token_to_id("[SEP]")), ("[CLS]", tk.token_to_id("[CLS]")))
    return tk


def train_metaspace(prepend_scheme, split):
    """A Llama-style tokenizer.json: BPE with byte fallback over a Metaspace pre-tokenizer."""
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=split)
    base.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                                           show_progress=False))
    model = json.loads(base.to_str())["model"]
    vocab = dict(model["vocab"])
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tk = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.add_special_tokens(["<unk>", "<s>", "</s>"])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=split)
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1",
                                                      special_tokens=[("<s>", 1)])
    return tk


def build(kind, folder):
    """Writes a tiny tokenizer of `kind` into folder; returns the from_pretrained kwargs to try."""
    aps = [{"add_prefix_space": True}, {"add_prefix_space": False}]
    if kind == "roberta-json":
        train_bytelevel().save(str(folder / "tokenizer.json"))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64})
        return aps
    if kind == "roberta-legacy":
        train_bytelevel().model.save(str(folder))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "RobertaTokenizer"})
        return aps
    if kind == "bytelevel-backend":
        train_bytelevel().save(str(folder / "tokenizer.json"))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                      "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"})
        return [{}]
    if kind in ("bert-legacy", "bert-cased-legacy"):
        train_wordpiece(normalizers.BertNormalizer(lowercase=True)).model.save(str(folder))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer",
                                                      "do_lower_case": kind == "bert-legacy"})
        return [{}]
    if kind == "wordpiece-backend":
        normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=True, handle_chinese_chars=False)
        train_wordpiece(normalizer, max_chars=12).save(str(folder / "tokenizer.json"))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                      "unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                                                      "sep_token": "[SEP]", "mask_token": "[MASK]"})
        return [{}]
    if kind == "llama-spm":
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus()), model_prefix=str(folder / "tokenizer"), vocab_size=800,
            model_type="bpe", byte_fallback=True, character_coverage=0.98, minloglevel=2, num_threads=1)
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "LlamaTokenizer", "legacy": False,
                                                      "add_bos_token": True, "add_eos_token": False})
        return aps + [{}, {"add_eos_token": True}]
    if kind in ("metaspace-first", "metaspace-always-split"):
        scheme, split = ("first", False) if kind == "metaspace-first" else ("always", True)
        train_metaspace(scheme, split).save(str(folder / "tokenizer.json"))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                      "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
        return [{}]
    raise ValueError(kind)


KINDS = ["roberta-json", "roberta-legacy", "bytelevel-backend", "bert-legacy", "bert-cased-legacy",
         "wordpiece-backend", "llama-spm", "metaspace-first", "metaspace-always-split"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    built = {}

    def get(kind):
        if kind not in built:
            folder = tmp_path_factory.mktemp(kind)
            built[kind] = (folder, build(kind, folder))
        return built[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_parity(tiny, kind):
    folder, variants = tiny(kind)
    texts = corpus()[::3] + adversarial_corpus()
    allowed = set(assigned_code_points(bert="bert" in kind or "wordpiece" in kind))
    texts += random_texts(500, seed=KINDS.index(kind), allowed=allowed)
    for kwargs in variants:
        hf = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
        tok = lf.AutoTokenizer.from_pretrained(folder, **kwargs)
        what = f"{kind} {kwargs}"
        for call in ({}, {"truncation": True, "max_length": 16}):
            assert_same_encoding(hf(texts, **call), tok(texts, **call), texts, f"{what} {call}")
        pairs = texts[1:] + texts[:1]
        assert_same_encoding(hf(texts, pairs), tok(texts, pairs), texts, f"{what} pairs",
                             keys=("input_ids", "attention_mask", "token_type_ids"))


@pytest.mark.parametrize("kind", ["roberta-json", "bert-legacy", "llama-spm", "metaspace-first", "wordpiece-backend"])
def test_tiny_call_semantics(tiny, kind):
    folder, variants = tiny(kind)
    hf = transformers.AutoTokenizer.from_pretrained(folder, **variants[0])
    tok = lf.AutoTokenizer.from_pretrained(folder, **variants[0])
    if hf.pad_token is None:
        hf.pad_token = hf.eos_token
        tok.pad_token = tok.eos_token
    texts = adversarial_corpus()
    check_call_options(hf, tok, texts, kind)
    check_decode_and_vocabulary(hf, tok, texts, kind)


def test_pad_token_assignment(tiny):
    folder, _ = tiny("llama-spm")
    tok = lf.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    tok.pad_token_id = tok.eos_token_id
    hf.pad_token_id = hf.eos_token_id
    assert (tok.pad_token, tok.pad_token_id) == (hf.pad_token, hf.pad_token_id)
    texts = ["short", "a longer text here", ""]
    assert_same_encoding(hf(texts, padding=True), tok(texts, padding=True), texts, "pad_token_id = eos")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.pad_token = "<no such token>"
    batch = tok(texts)
    padded = tok.pad({"input_ids": batch["input_ids"]}, return_tensors="np")
    expected = hf.pad({"input_ids": batch["input_ids"]}, return_tensors="np")
    assert_same_encoding(expected, padded, texts, "tokenizer.pad")


def test_threads_agree(tiny):
    """Batch encoding on 1 and all OpenMP threads, and from two Python threads at once, agree."""
    folder, _ = tiny("roberta-json")
    tok = lf.AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
    texts = corpus() * 4
    expected = tok(texts)["input_ids"]
    tok.num_threads = 1
    assert tok(texts)["input_ids"] == expected
    tok.num_threads = 0
    results = [None, None]

    def work(k):
        results[k] = tok(texts)["input_ids"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected, expected]


# bad files, arguments and ids ------------------------------------------------------------------

def test_missing_and_broken_files(tmp_path, tiny):
    with pytest.raises(OSError, match="downloads nothing"):
        lf.AutoTokenizer.from_pretrained(str(tmp_path / "no-such-folder"))
    cache = tmp_path / "hub" / "models--org--tiny"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("abc123")
    (cache / "snapshots").mkdir()
    shutil.copytree(tiny("roberta-json")[0], cache / "snapshots" / "abc123")
    from_cache = lf.AutoTokenizer.from_pretrained("org/tiny", cache_dir=tmp_path / "hub")
    assert from_cache("a fire")["input_ids"] == lf.AutoTokenizer.from_pretrained(tiny("roberta-json")[0])("a fire")["input_ids"]
    with pytest.raises(OSError, match="no tokenizer files"):
        lf.AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not valid JSON"):
        lf.AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}))
    with pytest.raises(ValueError, match="Unigram"):
        lf.AutoTokenizer.from_pretrained(tmp_path)
    bad = tmp_path / "spm"
    bad.mkdir()
    (bad / "tokenizer.model").write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(ValueError, match="tokenizer.model"):
        lf.AutoTokenizer.from_pretrained(bad)
    folder, _ = tiny("roberta-legacy")
    broken = tmp_path / "merges"
    broken.mkdir()
    (broken / "vocab.json").write_text((folder / "vocab.json").read_text(encoding="utf-8"), encoding="utf-8")
    (broken / "merges.txt").write_text("#version: 0.2\nno_such_token Ġ\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merge 0 .*no_such_token.* missing from the vocabulary"):
        lf.AutoTokenizer.from_pretrained(broken)


def test_bad_call_arguments(tiny):
    folder, _ = tiny("roberta-json")
    tok = lf.AutoTokenizer.from_pretrained(folder)
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="sideways")
    with pytest.raises(ValueError, match="truncation"):
        tok("a", truncation="middle", max_length=4)
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="tf")
    with pytest.raises(ValueError, match="max_length"):
        tok("a", truncation=True, max_length=-3)
    with pytest.raises(ValueError, match="padding_side"):
        tok("a", padding=True, padding_side="middle")
    with pytest.raises(ValueError, match="text"):
        tok(None)
    with pytest.raises(ValueError, match="both be str or both be lists"):
        tok("a", ["b"])
    with pytest.raises(ValueError, match="differ in length"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="token id 99999 is outside the vocabulary"):
        tok.decode([0, 99999])
    with pytest.raises(ValueError, match="-1 is outside"):
        tok.decode([-1])
    assert tok.convert_ids_to_tokens([0, 99999]) == ["<s>", None]


def test_c_entry_points_validate(tiny):
    folder, _ = tiny("roberta-json")
    tok = lf.AutoTokenizer.from_pretrained(folder)
    template = ([], [], [], [], [], 0)
    with pytest.raises(TypeError):
        _C.tokenizer_new([], {}, None, [], template)
    with pytest.raises(TypeError, match="vocab token"):
        _C.tokenizer_new({}, {1: 0}, None, [], template)
    with pytest.raises(ValueError, match="outside"):
        _C.tokenizer_new({}, {"a": -5}, None, [], template)
    with pytest.raises(ValueError, match="one space"):
        _C.tokenizer_new({}, {"a": 0}, ["a"], [], template)
    with pytest.raises(ValueError, match="missing from the vocabulary"):
        _C.tokenizer_new({}, {"a": 0}, ["a b"], [], template)
    with pytest.raises(ValueError, match="negative id"):
        _C.tokenizer_new({}, {"a": 0}, [], [("x", -2, True, False, False, False, False)], template)
    with pytest.raises(ValueError, match="post-processor pre: token id 7"):
        _C.tokenizer_new({}, {"a": 0}, [], [], ([(7, 0)], [], [], [], [], 0))
    with pytest.raises(ValueError, match="unknown model kind"):
        _C.tokenizer_new({"model": 9}, {"a": 0}, [], [], template)
    with pytest.raises(TypeError, match="model must be an int"):
        _C.tokenizer_new({"model": "bpe"}, {"a": 0}, [], [], template)
    args = (tok._capsule, ["a"], None, True, -1, 0, False, -1, 0, False, 1, 0, False, True, False, 0)
    with pytest.raises(ValueError):
        _C.tokenizer_encode_batch(object(), *args[1:])
    with pytest.raises(ValueError, match="unknown truncation strategy"):
        _C.tokenizer_encode_batch(*args[:5], 7, *args[6:])
    with pytest.raises(TypeError, match="text 1 must be a str"):
        _C.tokenizer_encode_batch(args[0], ["a", b"b"], *args[2:])
    with pytest.raises(ValueError, match="unknown decoder kind"):
        _C.tokenizer_decode(tok._capsule, [0], 9, 0, 0, False)
    with pytest.raises(ValueError, match="does not fit in int32"):
        _C.tokenizer_pad([[2 ** 40]], 0, False, 0, 0, False, False)
    assert np.array_equal(_C.tokenizer_pad([[1], [2, 3]], 0, False, 0, 0, True, True), [[0, 1], [2, 3]])

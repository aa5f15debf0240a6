"""Reads a tokenizer folder into the description the C tokenizer is built from, the way the pinned
transformers (5.x) builds its tokenizer: tokenizer.json when present (rebuilt as the class named by
tokenizer_config.json does), else the legacy files (vocab.json + merges.txt, tokenizer.model,
vocab.txt). Python parses; lorafast._C tokenizes."""

import json
import os

from .hub import resolve_model_folder
from .tokenization_spm import generate_merges, read_model

VERY_LARGE_INTEGER = int(1e30)  # transformers' default model_max_length: "no limit"
LARGE_INTEGER = int(1e20)  # a model_max_length above this is no limit for padding and truncation
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# model types whose hub tokenizer_class transformers ignores, loading tokenizer.json as it is
# (transformers.models.auto.tokenization_auto.MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, the
# ones with SentencePiece / byte-level / WordPiece tokenizers)
AS_IS_MODEL_TYPES = {"mistral", "mixtral", "llava", "llava_next", "vipllava", "phi3", "qwen2", "internlm2", "jamba"}

MODEL_TYPE_KINDS = {"roberta": "roberta", "xlm-roberta": None, "bert": "bert", "distilbert": "bert", "llama": "llama"}
MODEL_TYPE_KINDS = {k: v for k, v in MODEL_TYPE_KINDS.items() if v}

# Model enums of csrc/tokenizers/tokenizer.h
BPE, WORDPIECE = 0, 1
PRE_NONE, PRE_BYTELEVEL, PRE_METASPACE, PRE_BERT = 0, 1, 2, 3
PREPEND = {"never": 0, "first": 1, "always": 2}
DEC_BYTELEVEL, DEC_METASPACE, DEC_WORDPIECE = 0, 1, 2

CLASS_DEFAULTS = {
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    "bert": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"},
    "llama": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    "backend": {},
}


def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


def _token_content(value):
    """A special token from a config: str, AddedToken dict, or None."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _added_from(value, special):
    """(content, special, lstrip, rstrip, single_word, normalized) of a config token entry."""
    if isinstance(value, dict):
        return (value["content"], bool(value.get("special", special)), bool(value.get("lstrip", False)),
                bool(value.get("rstrip", False)), bool(value.get("single_word", False)),
                bool(value.get("normalized", not value.get("special", special))))
    return (str(value), special, False, False, False, not special)


def _class_kind(tokenizer_config, config, tokenizer_json):
    cls = (tokenizer_config or {}).get("tokenizer_class") or (config or {}).get("tokenizer_class") or ""
    model_type = (config or {}).get("model_type")
    cls = cls.lower().replace("fast", "")
    if tokenizer_json is not None and (model_type in AS_IS_MODEL_TYPES or cls == "tokenizersbackend"):
        return "backend"
    if not cls and model_type in MODEL_TYPE_KINDS:  # transformers' TOKENIZER_MAPPING by config.json
        return MODEL_TYPE_KINDS[model_type]
    for kind, names in (("roberta", ("robertatokenizer", "gpt2tokenizer", "bartokenizer")),
                        ("bert", ("berttokenizer", "distilberttokenizer", "mpnettokenizer")),
                        ("llama", ("llamatokenizer", "codellamatokenizer"))):
        if cls in names:
            return kind
    if tokenizer_json is not None:
        return "backend"
    raise ValueError(f"tokenizer_class {cls!r} is not supported without a tokenizer.json")


def _json_model(tj, path):
    """tokenizer.json's "model" (its type, vocab, merges), or a ValueError naming the file and what is missing."""
    if not isinstance(tj, dict):
        raise ValueError(f"{path}: expected a JSON object (a tokenizers tokenizer.json), got {type(tj).__name__}")
    model = tj.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{path}: no \"model\" object (the tokenizer model: its type, vocab and merges)"
                         if model is None else f"{path}: \"model\" must be an object, got {type(model).__name__}")
    vocab = model.get("vocab")
    if not isinstance(vocab, (dict, list)):
        raise ValueError(f"{path}: model has no \"vocab\" (an object of token -> id, or a list)"
                         if vocab is None else f"{path}: model.vocab must be an object or a list, got "
                         f"{type(vocab).__name__}")
    added = tj.get("added_tokens") or []
    if not isinstance(added, list):
        raise ValueError(f"{path}: \"added_tokens\" must be a list, got {type(added).__name__}")
    for i, t in enumerate(added):
        if not isinstance(t, dict) or not isinstance(t.get("content"), str) or not isinstance(t.get("id"), int):
            raise ValueError(f"{path}: added_tokens[{i}] must be an object with a string \"content\" and an "
                             f"integer \"id\", got {t!r}")
    return model


def _json_model_kind(model):
    kind = model.get("type")
    if kind is None:  # old tokenizer.json files: no "type"
        kind = "BPE" if "merges" in model else "WordPiece" if "continuing_subword_prefix" in model else None
    if kind not in ("BPE", "WordPiece"):
        raise ValueError(f"tokenizer model type {kind!r} is not supported (BPE and WordPiece are)")
    return kind


def _template_from_json(post, token_ids):
    """(pre, post, pair_pre, mid, pair_post, type_b) of a tokenizer.json post_processor."""
    if post is None:
        return [], [], [], [], [], 1
    kind = post.get("type")
    if kind in ("RobertaProcessing", "BertProcessing"):
        cls, sep = [(post["cls"][1], 0)], [(post["sep"][1], 0)]
        if kind == "RobertaProcessing":
            return cls, sep, cls, sep + sep, sep, 0
        return cls, sep, cls, sep, [(post["sep"][1], 1)], 1
    if kind == "TemplateProcessing":
        specials = post.get("special_tokens", {})

        def ids_of(name, type_id):
            ids = specials[name]["ids"] if name in specials else [token_ids[name]]
            return [(i, type_id) for i in ids]

        def split(template, seqs):
            parts, current, type_b = [[]], [], 1
            for item in template:
                if "SpecialToken" in item:
                    current += ids_of(item["SpecialToken"]["id"], item["SpecialToken"]["type_id"])
                else:
                    parts[-1] = current
                    parts.append([])
                    current = []
                    if item["Sequence"]["id"] == "B":
                        type_b = item["Sequence"]["type_id"]
            parts[-1] = current
            if len(parts) != seqs + 1:
                raise ValueError(f"post_processor template {template} does not hold {seqs} sequence(s)")
            return parts, type_b

        (pre, post_), _ = split(post["single"], 1)
        (pair_pre, mid, pair_post), type_b = split(post["pair"], 2)
        return pre, post_, pair_pre, mid, pair_post, type_b
    if kind == "Sequence":
        for p in post.get("processors", []):
            if p.get("type") in ("RobertaProcessing", "BertProcessing", "TemplateProcessing"):
                return _template_from_json(p, token_ids)
        return [], [], [], [], [], 1
    raise ValueError(f"post_processor {kind!r} is not supported")


def _flags_template(bos_id, eos_id, add_bos, add_eos):
    """transformers' update_post_processor: [bos] A [eos] / [bos] A [eos] [bos:1] B:1 [eos:1]."""
    pre = [(bos_id, 0)] if add_bos else []
    post = [(eos_id, 0)] if add_eos else []
    mid = post + ([(bos_id, 1)] if add_bos else [])
    return pre, post, pre, mid, [(eos_id, 1)] if add_eos else [], 1


def _find(d, key, default=None):
    return d[key] if key in d and d[key] is not None else default


def load(path_or_id, add_prefix_space=None, **kwargs):
    """Returns the description of a tokenizer: config for C, vocab, merges, added tokens, template,
    decoder options and the HF attributes (special tokens, padding side, model_max_length ...)."""
    folder = resolve_model_folder(path_or_id, revision=kwargs.pop("revision", None) or "main",
                                  cache_dir=kwargs.pop("cache_dir", None))
    tc = dict(_read_json(folder, "tokenizer_config.json") or {})
    stm = _read_json(folder, "special_tokens_map.json") or {}
    config = _read_json(folder, "config.json") or {}
    tj = _read_json(folder, "tokenizer.json")
    has = {name: os.path.isfile(os.path.join(folder, name))
           for name in ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")}
    if tj is None and not any(has.values()):
        raise OSError(f"no tokenizer files in {folder}: expected tokenizer.json, vocab.json + merges.txt, "
                      "tokenizer.model or vocab.txt")
    opts = {**tc, **kwargs}
    if add_prefix_space is not None:
        opts["add_prefix_space"] = add_prefix_space
    kind = _class_kind(tc, config, tj) if (tj is not None or tc.get("tokenizer_class")) else None
    if kind is None:  # legacy files without a class: pick by file
        kind = "roberta" if has["vocab.json"] else "llama" if has["tokenizer.model"] else "bert"

    spec = {"folder": folder, "kind": kind, "files": []}
    cfg = {}
    merges = None
    added = []  # (content, id or None, special, lstrip, rstrip, single_word, normalized)
    json_template = None
    decoder = {}

    if tj is not None:
        spec["files"].append("tokenizer.json")
        model = _json_model(tj, os.path.join(folder, "tokenizer.json"))
        model_kind = _json_model_kind(model)
        vocab = model["vocab"]
        if isinstance(vocab, list):
            vocab = {(t[0] if isinstance(t, list) else t): i for i, t in enumerate(vocab)}
        if model_kind == "BPE":
            merges = model.get("merges", [])
        for t in tj.get("added_tokens", []):
            added.append((t["content"], t["id"], bool(t.get("special", False)), bool(t.get("lstrip", False)),
                          bool(t.get("rstrip", False)), bool(t.get("single_word", False)),
                          bool(t.get("normalized", False))))
        json_template = tj.get("post_processor")
        pre = tj.get("pre_tokenizer") or {}
        norm = tj.get("normalizer") or {}
        family = _json_family(model_kind, model, pre, norm)
        if kind == "backend":  # tokenizer.json as it is
            cfg.update(_json_components(family, model, pre, norm, vocab))
            decoder = _json_decoder(family, tj.get("decoder") or {})
    elif kind == "roberta":
        spec["files"] += ["vocab.json", "merges.txt"]
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [line for line in lines if line and not line.startswith("#version")]
        family = "bytelevel"
    elif kind == "llama":
        spec["files"].append("tokenizer.model")
        sp = read_model(os.path.join(folder, "tokenizer.model"))
        vocab = {piece: i for i, (piece, _, _) in enumerate(sp["pieces"])}
        merges = generate_merges(vocab)
        for i, (piece, _, kind_) in enumerate(sp["pieces"]):
            if kind_ in (3, 4):  # control (special) and user-defined pieces are added tokens
                added.append((piece, i, kind_ == 3, False, False, False, False))
        tr = sp["trainer"]
        for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unk")):
            if tr.get(key + "_id", 0) >= 0 and name not in opts and name not in stm:
                opts[name] = tr.get(key + "_piece") or CLASS_DEFAULTS["llama"][name]
        family = "spm"
    else:
        spec["files"].append("vocab.txt")
        with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as f:
            tokens = f.read().split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        vocab = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t.rstrip("\n"), i)
        family = "wordpiece"

    # the class rebuild of transformers 5 (RobertaTokenizer, LlamaTokenizer, BertTokenizer)
    if kind == "roberta":
        cfg.update(model=BPE, pre_tokenizer=PRE_BYTELEVEL, add_prefix_space=int(bool(opts.get("add_prefix_space") or False)),
                   bert_normalizer=0, byte_fallback=0, fuse_unk=0, unk_id=-1)
        decoder = {"decoder": DEC_BYTELEVEL}
    elif kind == "llama":
        aps = opts.get("add_prefix_space")
        aps = True if aps is None else bool(aps)
        legacy = bool(opts.get("legacy", False))
        scheme = ("first" if not legacy else "always") if aps else "never"
        cfg.update(model=BPE, pre_tokenizer=PRE_METASPACE, prepend_scheme=PREPEND[scheme], split=0,
                   bert_normalizer=0, byte_fallback=1, fuse_unk=1, unk_id=-1)
        decoder = {"decoder": DEC_METASPACE, "strip_left": int(aps)}
    elif kind == "bert":
        lower = bool(opts.get("do_lower_case", True))
        strip = opts.get("strip_accents")
        unk = _token_content(_find(opts, "unk_token", _find(stm, "unk_token", "[UNK]")))
        cfg.update(model=WORDPIECE, pre_tokenizer=PRE_BERT, bert_normalizer=1, clean_text=1,
                   handle_chinese_chars=int(bool(opts.get("tokenize_chinese_chars", True))),
                   strip_accents=int(lower if strip is None else bool(strip)), lowercase=int(lower),
                   unk_id=vocab.get(str(unk), -1), subword_prefix="##",
                   max_input_chars_per_word=100)
        decoder = {"decoder": DEC_WORDPIECE, "cleanup": 1}

    # special tokens: kwargs > tokenizer_config > special_tokens_map > class defaults
    defaults = CLASS_DEFAULTS[kind]
    specials = {}
    for name in SPECIAL_NAMES:
        value = opts[name] if name in opts else stm[name] if name in stm else defaults.get(name)
        specials[name] = value
    extra = opts.get("additional_special_tokens") or stm.get("additional_special_tokens") or []
    for t in (tc.get("added_tokens_decoder") or {}).items():
        i, value = t
        if not any(a[0] == value["content"] for a in added):
            added.append((value["content"], int(i)) + _added_from(value, True)[1:])
    known = {a[0] for a in added}
    for value in list(specials.values()) + list(extra):
        if value is None:
            continue
        entry = _added_from(value, True)
        if entry[0] not in known:
            added.append((entry[0], None) + entry[1:])
            known.add(entry[0])
    # ids of added tokens: the vocabulary's, else new ids after it
    next_id = max(list(vocab.values()) + [a[1] for a in added if a[1] is not None] + [-1]) + 1
    resolved = []
    for a in added:
        token_id = a[1] if a[1] is not None else vocab.get(a[0])
        if token_id is None:
            token_id, next_id = next_id, next_id + 1
        resolved.append((a[0], token_id) + tuple(a[2:]))
    token_ids = dict(vocab)
    token_ids.update({a[0]: a[1] for a in resolved})

    def id_of(name):
        content = _token_content(specials.get(name))
        return None if content is None else token_ids.get(str(content))

    # the template: class rebuilds set it, explicit add_bos/add_eos flags rebuild it, else tokenizer.json's
    if kind == "roberta":
        template = _template_from_json({"type": "RobertaProcessing", "cls": [None, id_of("cls_token")],
                                        "sep": [None, id_of("sep_token")]}, token_ids)
    elif kind == "bert":
        template = _template_from_json({"type": "BertProcessing", "cls": [None, id_of("cls_token")],
                                        "sep": [None, id_of("sep_token")]}, token_ids)
    elif "add_bos_token" in opts or "add_eos_token" in opts or json_template is None:
        add_bos = bool(opts.get("add_bos_token", False)) and id_of("bos_token") is not None
        add_eos = bool(opts.get("add_eos_token", False)) and id_of("eos_token") is not None
        template = _flags_template(id_of("bos_token"), id_of("eos_token"), add_bos, add_eos)
    else:
        template = _template_from_json(json_template, token_ids)

    spec.update(
        config=cfg, vocab=vocab, merges=merges, added=resolved, template=template, decoder=decoder,
        specials={k: (None if v is None else str(_token_content(v))) for k, v in specials.items()},
        additional_special_tokens=[str(_token_content(t)) for t in extra],
        model_max_length=int(_find(opts, "model_max_length", VERY_LARGE_INTEGER)),
        padding_side=_find(opts, "padding_side", "left" if kind == "llama" else "right"),
        truncation_side=_find(opts, "truncation_side", "right"),
        clean_up_tokenization_spaces=bool(_find(opts, "clean_up_tokenization_spaces", False)),
        model_input_names=["input_ids", "token_type_ids", "attention_mask"] if kind == "bert"
        else ["input_ids", "attention_mask"],
        add_bos_token=bool(opts.get("add_bos_token", False)), add_eos_token=bool(opts.get("add_eos_token", False)),
        add_prefix_space=opts.get("add_prefix_space"),
    )
    return spec


def _json_family(model_kind, model, pre, norm):
    if model_kind == "WordPiece":
        return "wordpiece"
    pre_types = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers", [])}
    if "ByteLevel" in pre_types:
        return "bytelevel"
    return "spm"


def _json_components(family, model, pre, norm, vocab):
    unk = model.get("unk_token")
    cfg = {"unk_id": vocab.get(unk, -1) if unk is not None else -1}
    if family == "wordpiece":
        if norm.get("type") not in ("BertNormalizer", None):
            raise ValueError(f"normalizer {norm.get('type')!r} is not supported with WordPiece")
        lower = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        cfg.update(model=WORDPIECE, pre_tokenizer=PRE_BERT, bert_normalizer=int(bool(norm)),
                   clean_text=int(norm.get("clean_text", True)), handle_chinese_chars=int(norm.get("handle_chinese_chars", True)),
                   strip_accents=int(lower if strip is None else bool(strip)), lowercase=int(lower),
                   subword_prefix=model.get("continuing_subword_prefix", "##"),
                   max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)))
        return cfg
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("dropout"):
        raise ValueError("BPE with continuing_subword_prefix, end_of_word_suffix or dropout is not supported")
    cfg.update(model=BPE, byte_fallback=int(bool(model.get("byte_fallback", False))),
               fuse_unk=int(bool(model.get("fuse_unk", False))))
    if family == "bytelevel":
        levels = [pre] if pre.get("type") == "ByteLevel" else [p for p in pre.get("pretokenizers", [])
                                                                 if p.get("type") == "ByteLevel"]
        cfg.update(pre_tokenizer=PRE_BYTELEVEL, add_prefix_space=int(bool(levels[0].get("add_prefix_space", False))))
        return cfg
    if pre.get("type") == "Metaspace" and not norm:
        scheme = pre.get("prepend_scheme") or ("always" if pre.get("add_prefix_space", True) else "never")
        cfg.update(pre_tokenizer=PRE_METASPACE, prepend_scheme=PREPEND[scheme], split=int(bool(pre.get("split", True))))
        return cfg
    raise ValueError(f"SentencePiece BPE with normalizer {norm.get('type')!r} and pre_tokenizer "
                     f"{pre.get('type')!r} is not supported")


def _json_decoder(family, dec):
    if family == "bytelevel":
        return {"decoder": DEC_BYTELEVEL}
    if family == "wordpiece":
        return {"decoder": DEC_WORDPIECE, "cleanup": int(bool(dec.get("cleanup", True)))}
    steps = dec.get("decoders", [dec]) if dec else []
    strip = next((int(s.get("start", 0)) for s in steps if s.get("type") == "Strip"), 0)
    if dec.get("type") == "Metaspace":
        strip = int(dec.get("prepend_scheme", "always") != "never")
    return {"decoder": DEC_METASPACE, "strip_left": min(strip, 1)}

"""The tokenizer object: Hugging Face call semantics over the C tokenizer (lorafast._C)."""

import os
import shutil

import numpy as np

from ._backend import _C
from .tokenization_auto import LARGE_INTEGER, SPECIAL_NAMES, load

TRUNCATION = {"longest_first": 0, "only_first": 1, "only_second": 2}


class BatchEncoding(dict):
    """A dict of model inputs with attribute access (enc.input_ids), as transformers' BatchEncoding."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self):
        return dict(self)

    def __setstate__(self, state):
        self.update(state)


def _is_text_list(x):
    return isinstance(x, (list, tuple)) and all(isinstance(t, str) for t in x)


def _check_text(x, what):
    if isinstance(x, str) or _is_text_list(x):
        return
    got = type(x).__name__
    if isinstance(x, (list, tuple)):  # name the first item at fault (a None text from a csv gap, ...)
        i = next(i for i, t in enumerate(x) if not isinstance(t, str))
        got += f" whose item {i} is {x[i]!r}, not a str"
    raise ValueError(f"{what} must be of type `str` (single example) or `list[str]` (batch), got {got}")


class PreTrainedTokenizer:
    """A byte-level BPE, SentencePiece BPE or WordPiece tokenizer computed in C. Built by
    AutoTokenizer.from_pretrained; mirrors transformers' tokenizer API."""

    def __init__(self, spec):
        self._spec = spec
        self._vocab = spec["vocab"]
        self._capsule = _C.tokenizer_new(spec["config"], spec["vocab"], spec["merges"], spec["added"],
                                         tuple(spec["template"]))
        self._info = _C.tokenizer_info(self._capsule)
        self._added = {a[0]: a[1] for a in spec["added"]}
        self._special_added = {a[0] for a in spec["added"] if a[2]}
        self._decoder = spec["decoder"]
        self.name_or_path = spec["folder"]
        self.model_max_length = spec["model_max_length"]
        self.padding_side = spec["padding_side"]
        self.truncation_side = spec["truncation_side"]
        self.clean_up_tokenization_spaces = spec["clean_up_tokenization_spaces"]
        self.model_input_names = list(spec["model_input_names"])
        self.add_prefix_space = spec["add_prefix_space"]
        self.pad_token_type_id = 0
        self._specials = dict(spec["specials"])
        self.additional_special_tokens = list(spec["additional_special_tokens"])
        self.num_threads = 0  # 0: all OpenMP threads

    # special tokens ---------------------------------------------------------------------------

    def _token_id(self, token):
        if token is None:
            return None
        return self._added[token] if token in self._added else self._vocab.get(token)

    def __getattr__(self, name):
        specials = self.__dict__.get("_specials")
        if specials is not None:
            if name in specials:
                return specials[name]
            if name.endswith("_id") and name[:-3] in specials:
                return self._token_id(specials[name[:-3]])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        specials = self.__dict__.get("_specials")
        if specials is not None and name in SPECIAL_NAMES:
            if value is not None and not isinstance(value, str):
                value = str(getattr(value, "content", value))
            if value is not None and self._token_id(value) is None:
                raise ValueError(f"{name} {value!r} is not in the vocabulary of {self.name_or_path}")
            specials[name] = value
            return
        if specials is not None and name.endswith("_token_id") and name[:-3] in SPECIAL_NAMES:
            specials[name[:-3]] = None if value is None else self.convert_ids_to_tokens(int(value))
            return
        object.__setattr__(self, name, value)

    @property
    def special_tokens_map(self):
        out = {k: v for k, v in self._specials.items() if v is not None}
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    @property
    def all_special_tokens(self):
        seen = []
        for t in list(self._specials.values()) + self.additional_special_tokens:
            if t is not None and t not in seen:
                seen.append(t)
        return seen

    @property
    def all_special_ids(self):
        return [self._token_id(t) for t in self.all_special_tokens]

    # vocabulary -------------------------------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._vocab)

    def __len__(self):
        return len(self._vocab) + len(self._added.keys() - self._vocab.keys())

    def get_vocab(self):
        vocab = dict(self._vocab)
        vocab.update(self._added)
        return vocab

    @property
    def is_fast(self):
        return True

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        single = isinstance(ids, (int, np.integer))
        ids = np.asarray([ids] if single else ids, np.int64).reshape(-1)
        if skip_special_tokens and not single:
            special = [i for i in self.all_special_ids if i is not None]
            ids = ids[~np.isin(ids, special + [self._added[t] for t in self._special_added])]
        tokens = _C.tokenizer_ids_to_tokens(self._capsule, ids.tolist())
        return tokens[0] if single else tokens

    def convert_tokens_to_ids(self, tokens):
        unk = self._token_id(self._specials.get("unk_token"))
        if isinstance(tokens, str):
            return _C.tokenizer_tokens_to_ids(self._capsule, [tokens], unk)[0]
        return _C.tokenizer_tokens_to_ids(self._capsule, list(tokens), unk)

    # encoding ---------------------------------------------------------------------------------

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        if padding is True or padding == "longest":
            pad_to = 0
        elif padding is False or padding is None or padding == "do_not_pad":
            pad_to = -1
        elif padding == "max_length":
            pad_to = max_length if max_length is not None else self.model_max_length
            if pad_to > LARGE_INTEGER:  # transformers then does not pad
                pad_to = -1
        else:
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if truncation is None and max_length is not None and (padding is False or padding is None):
            truncation = True
        if truncation is True:
            truncation = "longest_first"
        if truncation is False or truncation is None or truncation == "do_not_truncate":
            limit = -1
        elif truncation in TRUNCATION:
            limit = max_length if max_length is not None else self.model_max_length
            if limit > LARGE_INTEGER:
                limit = -1
        else:
            raise ValueError(f"truncation must be True, False, 'longest_first', 'only_first', 'only_second' or "
                             f"'do_not_truncate', got {truncation!r}")
        if pad_to != -1 and self.pad_token_id is None:
            raise ValueError("Asking to pad but the tokenizer does not have a padding token. Set "
                             "`tokenizer.pad_token = tokenizer.eos_token` or add a pad token.")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        if limit != -1 and limit < 0:
            raise ValueError(f"max_length must be >= 0, got {limit}")
        if limit != -1 and pad_to != -1 and pad_to_multiple_of is not None and limit % pad_to_multiple_of:
            raise ValueError(f"Truncation and padding are both activated but truncation length ({limit}) is not a "
                             f"multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return pad_to, TRUNCATION.get(truncation, 0), limit

    def __call__(self, text=None, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, stride=0, pad_to_multiple_of=None, padding_side=None, return_tensors=None,
                 return_token_type_ids=None, return_attention_mask=None, return_length=False, **kwargs):
        if text is None:
            raise ValueError("You need to specify `text`.")
        if kwargs.get("is_split_into_words"):
            raise ValueError("is_split_into_words=True is not supported")
        if stride:
            raise ValueError("stride (overflowing tokens) is not supported")
        _check_text(text, "text")
        if text_pair is not None:
            _check_text(text_pair, "text_pair")
            if isinstance(text, str) != isinstance(text_pair, str):
                raise ValueError("text and text_pair must both be str or both be lists")
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        pairs = None if text_pair is None else (list(text_pair) if batched else [text_pair])
        pad_to, strategy, limit = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        want_mask = True if return_attention_mask is None else bool(return_attention_mask)
        want_types = ("token_type_ids" in self.model_input_names) if return_token_type_ids is None \
            else bool(return_token_type_ids)
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        ids, mask, types = _C.tokenizer_encode_batch(
            self._capsule, texts, pairs, bool(add_special_tokens), limit, strategy, self.truncation_side == "left",
            pad_to, pad_to_multiple_of or 0, side == "left", pad_id, self.pad_token_type_id,
            return_tensors is not None, want_mask, want_types, self.num_threads)
        out = BatchEncoding(input_ids=ids)
        if types is not None:
            out["token_type_ids"] = types
        if mask is not None:
            out["attention_mask"] = mask
        if return_length:
            out["length"] = [len(r) for r in ids] if return_tensors is None else np.full(len(texts), ids.shape[1])
        if not batched:
            out = BatchEncoding({k: v[0] for k, v in out.items()}) if return_tensors is None else out
        return _as_tensors(out, return_tensors)

    def encode(self, text, text_pair=None, add_special_tokens=True, **kwargs):
        return self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def tokenize(self, text, pair=None, add_special_tokens=False, **kwargs):
        return self.convert_ids_to_tokens(self.encode(text, pair, add_special_tokens=add_special_tokens, **kwargs))

    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None, padding_side=None,
            return_attention_mask=None, return_tensors=None, **kwargs):
        """Pads features (a list of dicts or a dict of lists) as transformers' tokenizer.pad does."""
        if isinstance(encoded_inputs, (list, tuple)):
            if not encoded_inputs:
                raise ValueError("pad needs at least one feature")
            keys = list(encoded_inputs[0].keys())
            encoded_inputs = {k: [f[k] for f in encoded_inputs] for k in keys}
        if "input_ids" not in encoded_inputs:
            raise ValueError("pad needs input_ids in the features")
        pad_to, _, _ = self._strategies(padding, False, max_length, pad_to_multiple_of)
        side = (padding_side or self.padding_side) == "left"
        as_np = return_tensors is not None
        ids = encoded_inputs["input_ids"]
        out = BatchEncoding()
        for key, value in encoded_inputs.items():
            if key == "input_ids":
                out[key] = _C.tokenizer_pad(value, self.pad_token_id, False, pad_to, pad_to_multiple_of or 0, side, as_np)
            elif key == "token_type_ids":
                out[key] = _C.tokenizer_pad(value, self.pad_token_type_id, False, pad_to, pad_to_multiple_of or 0,
                                            side, as_np)
            elif key in ("attention_mask", "special_tokens_mask"):
                out[key] = _C.tokenizer_pad(value, 0 if key == "attention_mask" else 1, False, pad_to,
                                            pad_to_multiple_of or 0, side, as_np)
            else:
                out[key] = np.asarray(value) if as_np else value
        if "attention_mask" not in out and return_attention_mask is not False:
            out["attention_mask"] = _C.tokenizer_pad(ids, 0, True, pad_to, pad_to_multiple_of or 0, side, as_np)
        return _as_tensors(out, return_tensors)

    # decoding ---------------------------------------------------------------------------------

    def _decode_one(self, ids, skip_special_tokens, clean_up_tokenization_spaces):
        d = self._decoder
        data = _C.tokenizer_decode(self._capsule, ids, d["decoder"], d.get("strip_left", 0), d.get("cleanup", 0),
                                   bool(skip_special_tokens))
        text = data.decode("utf-8", "replace")
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        if clean and self._spec["kind"] == "bert":  # transformers skips the cleanup for BPE tokenizers
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if token_ids and isinstance(token_ids[0], (list, tuple)):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        return self._decode_one(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self._decode_one(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    # saving -----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, **kwargs):
        """Copies the tokenizer files this tokenizer was read from into save_directory."""
        os.makedirs(save_directory, exist_ok=True)
        names = self._spec["files"] + ["tokenizer_config.json", "special_tokens_map.json"]
        saved = []
        for name in names:
            src = os.path.join(self.name_or_path, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(save_directory, name))
                saved.append(os.path.join(save_directory, name))
        return tuple(saved)

    def __repr__(self):
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, kind={self._spec['kind']!r}, "
                f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
                f"padding_side={self.padding_side!r}, special_tokens={self.special_tokens_map})")


def _as_tensors(out, return_tensors):
    if return_tensors == "pt":
        import torch

        return BatchEncoding({k: torch.from_numpy(np.asarray(v)) for k, v in out.items()})
    return out


class AutoTokenizer:
    """lorafast.AutoTokenizer.from_pretrained(folder or model id, add_prefix_space=None, **kwargs)."""

    def __init__(self):
        raise EnvironmentError("AutoTokenizer is built with AutoTokenizer.from_pretrained(path_or_id)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *inputs, add_prefix_space=None, **kwargs):
        kwargs.pop("use_fast", None)
        kwargs.pop("trust_remote_code", None)
        return PreTrainedTokenizer(load(os.fspath(pretrained_model_name_or_path), add_prefix_space, **kwargs))

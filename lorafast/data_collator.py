"""`DataCollatorWithPadding`: pads a list of tokenized examples into a batch, as transformers does.

The lorafast Trainer does not need it (it packs sequences without padding in C), but it is
accepted there and usable on its own: `collator([tok(t) for t in texts])`.
"""

import numpy as np

__all__ = ["DataCollatorWithPadding", "pad_sequences"]

_PAD_VALUES = {"attention_mask": 0, "special_tokens_mask": 1}


def pad_sequences(sequences, length, value, side="right", dtype=np.int64):
    """(B, length) array of the ragged int sequences, padded with value on the given side."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    flat = np.fromiter((t for s in sequences for t in s), dtype=dtype, count=int(lengths.sum()))
    out = np.full((len(sequences), length), value, dtype=dtype)
    cols = np.arange(length)
    mask = cols[None, :] < lengths[:, None] if side == "right" else cols[None, :] >= (length - lengths)[:, None]
    out[mask] = flat
    return out


class DataCollatorWithPadding:
    def __init__(self, tokenizer, padding=True, max_length=None, pad_to_multiple_of=None, return_tensors="np"):
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False/'do_not_pad'")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors={return_tensors!r}: use 'np' or 'pt'")
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors

    def _target_length(self, longest):
        length = self.max_length if self.padding == "max_length" else longest
        if longest > length:
            raise ValueError(f"an example has {longest} tokens, more than max_length={length}: truncate when tokenizing")
        m = self.pad_to_multiple_of
        return length if not m else -(-length // m) * m

    def _pad_value(self, name):
        if name == "input_ids":
            pad = getattr(self.tokenizer, "pad_token_id", None)
            if pad is None:
                raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos_token)")
            return pad
        if name == "token_type_ids":
            return getattr(self.tokenizer, "pad_token_type_id", 0)
        return _PAD_VALUES.get(name, 0)

    def __call__(self, features):
        if not features:
            raise ValueError("DataCollatorWithPadding got an empty list of features")
        if isinstance(features, dict):
            features = [dict(zip(features, row)) for row in zip(*features.values())]
        names = list(features[0].keys())
        batch = {}
        seq_names = [n for n in names if isinstance(features[0][n], (list, tuple, np.ndarray)) or
                     (hasattr(features[0][n], "dim") and features[0][n].dim() == 1)]
        if "input_ids" in seq_names:
            lengths = [len(f["input_ids"]) for f in features]
            do_pad = self.padding not in (False, "do_not_pad")
            length = self._target_length(max(lengths)) if do_pad else max(lengths)
            if not do_pad and len(set(lengths)) > 1:
                raise ValueError("padding=False needs examples of equal length")
            side = getattr(self.tokenizer, "padding_side", "right")
            for name in seq_names:
                seqs = [np.asarray(f[name]).tolist() for f in features]
                batch[name] = pad_sequences(seqs, length, self._pad_value(name), side)
        for name in names:
            if name in batch:
                continue
            out = "labels" if name in ("label", "label_ids") else name
            batch[out] = np.asarray([np.asarray(f[name]).tolist() for f in features])
        if self.return_tensors == "pt":
            import torch

            batch = {k: torch.as_tensor(v) for k, v in batch.items()}
        return batch

"""A minimal reader of SentencePiece's tokenizer.model (a ModelProto protobuf), enough for the
SentencePiece BPE tokenizers: the pieces (string, score, type), the trainer's special pieces and
the normalizer's add_dummy_prefix. No protobuf package is needed."""

import struct

# ModelProto fields: 1 pieces (SentencePiece), 2 trainer_spec, 3 normalizer_spec
# SentencePiece fields: 1 piece, 2 score, 3 type (1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 6 BYTE)
# TrainerSpec fields: 3 model_type (1 UNIGRAM, 2 BPE), 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id,
#                     45 unk_piece, 46 bos_piece, 47 eos_piece, 48 pad_piece
# NormalizerSpec fields: 3 add_dummy_prefix


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("tokenizer.model: truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("tokenizer.model: varint too long")


def _fields(data):
    """Yields (field number, wire type, value) of a protobuf message; value is int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            value, pos = data[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("tokenizer.model: truncated field")
        yield field, wire, value


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def read_model(path):
    """Returns {"pieces": [(piece, score, type)], "trainer": {...}, "add_dummy_prefix": bool}."""
    with open(path, "rb") as f:
        data = f.read()
    pieces, trainer, add_dummy_prefix = [], {}, True
    for field, wire, value in _fields(data):
        if field == 1 and wire == 2:
            piece, score, kind = "", 0.0, 1
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    piece = v.decode("utf-8")
                elif f == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif f == 3 and w == 0:
                    kind = v
            pieces.append((piece, score, kind))
        elif field == 2 and wire == 2:
            names = {3: "model_type", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
            strings = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
            for f, w, v in _fields(value):
                if f in names and w == 0:
                    trainer[names[f]] = _signed(v)
                elif f in strings and w == 2:
                    trainer[strings[f]] = v.decode("utf-8")
        elif field == 3 and wire == 2:
            for f, w, v in _fields(value):
                if f == 3 and w == 0:
                    add_dummy_prefix = bool(v)
    if not pieces:
        raise ValueError(f"{path}: no pieces found; is it a SentencePiece model?")
    return {"pieces": pieces, "trainer": trainer, "add_dummy_prefix": add_dummy_prefix}


def generate_merges(vocab):
    """BPE merges from a SentencePiece vocabulary, as transformers' generate_merges(vocab) does:
    every split of a piece into two pieces, ordered by the merged piece's id."""
    merges = []
    for merge, piece_id in vocab.items():
        local = [(merge[:i], merge[i:]) for i in range(1, len(merge)) if merge[:i] in vocab and merge[i:] in vocab]
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend((left, right, piece_id) for left, right in local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in merges]

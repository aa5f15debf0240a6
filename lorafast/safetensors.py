"""safetensors files, with the API of `safetensors.numpy`: `load_file`, `save_file` and a lazy
`safe_open`. Files are memory-mapped: opening one reads only its header, and a tensor's pages
are read when it is touched. Arrays are read-only views of the mapping that keep it alive
(`np.array(x)` makes a writable copy); unlike safetensors.numpy.load_file, nothing is copied.

NumPy has no bfloat16: a BF16 tensor comes back as a uint16 array of its bits; widen it with
`to_float32(array, "BF16")`, and write one with `save_file(..., dtypes={name: "BF16"})`.
`safe_open(path).get_dtype(name)` tells a tensor's safetensors dtype.

Every header is validated before any data is touched: the length prefix, UTF-8, JSON, known
dtypes, shapes, offsets inside the data area, no overlaps or holes, shape x dtype size = byte
length. Errors name the file and the problem. Writing is atomic (temporary file + rename).
Sharded checkpoints (model.safetensors.index.json): `open_checkpoint(folder)`.
"""

import json
import math
import os

import numpy as np

from . import hub
from ._backend import _C
from .convert import from_float32, to_float32

__all__ = ["safe_open", "load_file", "save_file", "open_checkpoint", "load_checkpoint", "to_float32",
           "from_float32", "SafetensorError"]

# safetensors dtype -> NumPy storage dtype; BF16 is held as uint16 (its bits)
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "C64": np.dtype("<c8"),
}
_CODE_OF = {np.dtype(v).str: k for k, v in DTYPES.items() if k != "BF16"}


class SafetensorError(ValueError):
    """A safetensors file or argument that is not valid; the message names the file."""


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise SafetensorError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _check_header(path, header):
    """Validates the parsed header; returns (metadata, {name: (dtype, shape, begin, end)})."""
    if not isinstance(header, dict):
        raise SafetensorError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise SafetensorError(f"{path}: __metadata__ must map strings to strings")
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise SafetensorError(f"{path}: tensor {name!r}: entry is not a JSON object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            raise SafetensorError(f"{path}: tensor {name!r}: unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise SafetensorError(f"{path}: tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise SafetensorError(f"{path}: tensor {name!r}: data_offsets {offsets!r} are not two integers")
        entries[name] = (dtype, tuple(shape), offsets[0], offsets[1])
    return metadata, entries


def _clip(n):
    return max(-(2**63), min(n, 2**63 - 1))


class _TensorSource:
    """What safe_open and ShardedCheckpoint share; self._names maps every tensor name."""

    _names = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return sorted(self._names)

    def __contains__(self, name):
        return name in self._names

    def get_tensors(self):
        """{name: array} of every tensor."""
        return {name: self.get_tensor(name) for name in self.keys()}


class safe_open(_TensorSource):
    """safe_open(path, framework="np"): a memory-mapped safetensors file, its header checked.
    keys(), metadata(), get_tensor(name), get_dtype(name); usable as a context manager."""

    def __init__(self, filename, framework="np", device="cpu"):
        if framework not in ("np", "numpy"):
            raise ValueError(f"framework must be 'np' (lorafast returns numpy arrays), got {framework!r}")
        if device != "cpu":
            raise ValueError(f"device must be 'cpu' for numpy arrays, got {device!r}")
        self._path = os.fspath(filename)
        try:
            self._file = _C.SafetensorsFile(self._path)
        except ValueError as e:
            raise SafetensorError(str(e)) from None
        raw = self._file.header()
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except UnicodeDecodeError as e:
            raise SafetensorError(f"{self._path}: header is not valid UTF-8 ({e})") from None
        except json.JSONDecodeError as e:
            raise SafetensorError(f"{self._path}: header is not valid JSON ({e})") from None
        except SafetensorError as e:
            raise SafetensorError(f"{self._path}: header has a {e}") from None
        self._metadata, self._entries = _check_header(self._path, header)
        self._names = self._entries
        names = list(self._entries)
        sizes = [math.prod(e[1]) * DTYPES[e[0]].itemsize for e in self._entries.values()]
        try:
            self._file.check_offsets(
                names,
                [_clip(e[2]) for e in self._entries.values()],
                [_clip(e[3]) for e in self._entries.values()],
                [_clip(s) for s in sizes],
            )
        except ValueError as e:
            raise SafetensorError(str(e)) from None

    def metadata(self):
        return None if self._metadata is None else dict(self._metadata)

    def get_dtype(self, name):
        """The tensor's safetensors dtype ("F32", "BF16", ...)."""
        return self._entry(name)[0]

    def get_tensor(self, name):
        """The tensor as a read-only NumPy array viewing the mapped file (BF16 as uint16 bits)."""
        dtype, shape, begin, end = self._entry(name)
        return self._file.array(begin, end, DTYPES[dtype], shape)

    def _entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self._path}: no tensor named {name!r}") from None


def load_file(filename):
    """{name: array} of every tensor in the file (read-only views of the mapped file)."""
    return safe_open(filename).get_tensors()


def _storage(path, name, value, code):
    """(safetensors dtype, C-contiguous little-endian array) of one tensor to save."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{path}: tensor {name!r} is a {type(value).__name__}, expected a numpy array")
    if value.dtype.byteorder == ">":
        value = value.astype(value.dtype.newbyteorder("<"))
    value = np.require(value, requirements="C")  # (np.ascontiguousarray makes 0-d arrays 1-d)
    if code is None:
        code = "BF16" if value.dtype.name == "bfloat16" else _CODE_OF.get(value.dtype.str)
    if code not in DTYPES or DTYPES[code].itemsize != value.dtype.itemsize or (
        code != "BF16" and DTYPES[code] != value.dtype
    ):
        raise SafetensorError(f"{path}: tensor {name!r}: cannot store a {value.dtype} array as {code!r}")
    return code, value


def save_file(tensors, filename, metadata=None, dtypes=None):
    """Writes {name: array} to filename atomically, keeping metadata (str -> str) as
    __metadata__. dtypes: {name: safetensors dtype} for arrays whose NumPy dtype does not say
    it, e.g. {"w": "BF16"} for a uint16 array of bfloat16 bits."""
    path = os.fspath(filename)
    if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
        raise TypeError(f"{path}: tensors must be a dict with str keys")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise TypeError(f"{path}: metadata must map str to str")
    if "__metadata__" in tensors:
        raise SafetensorError(f"{path}: '__metadata__' is reserved and cannot name a tensor")
    dtypes = dtypes or {}
    stored = {name: _storage(path, name, value, dtypes.get(name)) for name, value in tensors.items()}
    # largest items first keeps every tensor aligned to its item size, as safetensors does
    order = sorted(stored, key=lambda n: (-stored[n][1].dtype.itemsize, n))
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        code, value = stored[name]
        header[name] = {"dtype": code, "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    _C.safetensors_write(path, raw, [stored[n][1] for n in order])


class ShardedCheckpoint(_TensorSource):
    """The shards of model.safetensors.index.json as one file: keys(), get_tensor(name),
    get_dtype(name), metadata() (the index's "metadata")."""

    def __init__(self, index, files):
        self._index = index
        self._weight_map = self._names = hub.read_index(index)
        with open(index, encoding="utf-8") as f:
            self._metadata = json.load(f).get("metadata")
        shards = {os.path.basename(p): safe_open(p) for p in files}
        for name, shard in self._weight_map.items():
            if name not in shards[shard]:
                raise SafetensorError(f"{index}: tensor {name!r} is listed in shard {shard!r} but is not in it")
        self._shards = shards

    def metadata(self):
        return self._metadata

    def _shard(self, name):
        try:
            return self._shards[self._weight_map[name]]
        except KeyError:
            raise KeyError(f"{self._index}: no tensor named {name!r}") from None

    def get_dtype(self, name):
        return self._shard(name).get_dtype(name)

    def get_tensor(self, name):
        return self._shard(name).get_tensor(name)


def open_checkpoint(folder, prefix="model"):
    """The weights of a model folder, lazily: folder/model.safetensors (a safe_open), or the
    shards of folder/model.safetensors.index.json (a ShardedCheckpoint)."""
    files, index = hub.find_weights(os.fspath(folder), prefix)
    return safe_open(files[0]) if index is None else ShardedCheckpoint(index, files)


def load_checkpoint(folder, prefix="model"):
    """{name: array} of every tensor of a model folder, single file or sharded."""
    return open_checkpoint(folder, prefix).get_tensors()

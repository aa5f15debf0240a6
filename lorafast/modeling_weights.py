"""Checkpoint tensors for the model classes: name -> (numpy array, dtype name).

Uses lorafast.safetensors (the foundation's mmap reader/writer) when present; until it
lands, a minimal mmap reader/writer of the same format stands in (header parsed with json,
data mapped with numpy: no per-element Python)."""

import json
import os

import numpy as np

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32,
       "U8": np.uint8, "F64": np.float64, "BOOL": np.bool_, "I8": np.int8, "I16": np.int16}
_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = int.from_bytes(raw, "little")
        size = os.path.getsize(path)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} runs past the end of the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: header is not valid JSON ({e})") from None
    return header, 8 + n, size


def read_safetensors(path):
    """{name: (array, dtype_name)}; arrays are read-only memory maps; bf16 arrays hold uint16 bits."""
    header, start, size = _read_header(path)
    header.pop("__metadata__", None)
    out = {}
    data = np.memmap(path, dtype=np.uint8, mode="r") if size > start else np.zeros(0, np.uint8)
    for name, info in header.items():
        dtype = info.get("dtype")
        if dtype not in _NP:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype!r}")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        item = np.dtype(_NP[dtype]).itemsize
        if not (0 <= b <= e <= size - start) or (e - b) != item * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name} has data offsets {b}..{e} that do not fit its shape {shape}")
        arr = data[start + b : start + e].view(_NP[dtype]).reshape(shape)
        out[name] = (arr, _NAMES.get(dtype, np.dtype(_NP[dtype]).name))
    return out


def write_safetensors(tensors, path, metadata=None):
    """Writes {name: float32 array} atomically (temp file + rename)."""
    try:
        from .safetensors import save_file
    except ImportError:
        save_file = None
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    if save_file is not None:
        return save_file(tensors, path, metadata=metadata)
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        n = tensors[name].nbytes
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in sorted(tensors):
            f.write(tensors[name].tobytes())
    os.replace(tmp, path)


def load_checkpoint(folder):
    """{name: (array, dtype_name)} of a model folder: model.safetensors or a sharded index."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors(single)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for name in files:
            out.update(read_safetensors(os.path.join(folder, name)))
        return out
    if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
        raise OSError(f"{folder} holds only pytorch_model.bin: convert it to model.safetensors")
    raise OSError(f"no model.safetensors in {folder}")


def to_dtype(array, src, dst):
    """array stored as src ('float32' | 'float16' | 'bfloat16' bits) converted to dst."""
    if src == dst:
        return array
    f32 = array.astype(np.uint32) << 16 if src == "bfloat16" else array.astype(np.float32)
    if src == "bfloat16":
        f32 = f32.view(np.float32)
    if dst == "float32":
        return np.ascontiguousarray(f32, dtype=np.float32)
    if dst == "float16":
        return f32.astype(np.float16)
    if dst == "bfloat16":  # round to nearest even, NaN kept NaN
        bits = np.ascontiguousarray(f32, dtype=np.float32).view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        return np.where(np.isnan(f32), np.uint16(0x7FC0), rounded)
    raise ValueError(f"unsupported dtype {dst!r} (float32, float16, bfloat16)")

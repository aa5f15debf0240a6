"""Float-format conversion of whole arrays, in C (core/convert.h, OpenMP-parallel).

NumPy has no bfloat16: bfloat16 data lives in uint16 arrays of its bits, and
`to_float32(array, "bfloat16")` widens it. Dtypes are named as NumPy names them ("float32",
"float16", "bfloat16", ...) or by their safetensors codes ("F32", "F16", "BF16", ...).
"""

import numpy as np

from ._backend import _C

# safetensors dtype codes -> the C core's dtype names
_CODES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "I64": "int64", "U8": "uint8"}


def _dtype_name(dtype):
    return _CODES.get(dtype, dtype)


def convert(array, src, dst):
    """array stored as src (None: its own NumPy type) converted to a new array of dst
    ('float32', 'float16' or 'bfloat16' bits in uint16), round-to-nearest-even."""
    array = np.require(array, requirements=["C", "A"])
    return _C.convert(array, None if src is None else _dtype_name(src), _dtype_name(dst))


def to_float32(array, dtype=None):
    """array (float16, float32, int32, int64, uint8, or uint16 holding dtype='bfloat16' /
    'BF16') widened to a new float32 array. Exact; C, OpenMP-parallel."""
    return convert(array, dtype, "float32")


def from_float32(array, dtype):
    """A float32 array narrowed to dtype 'float16' or 'bfloat16' (returned as uint16),
    round-to-nearest-even, bit-identical to NumPy (float16) and PyTorch (bfloat16)."""
    return convert(np.require(array, dtype=np.float32), "float32", dtype)

"""lorafast.Tensor (the C core's tensor) and float-format conversion helpers.

CPU tensors share memory with NumPy (`Tensor.from_numpy(a)`, `t.numpy()` copy nothing);
`t.to("cuda")` / `t.to("cpu")` copy. NumPy has no bfloat16: bfloat16 data lives in uint16
arrays, and `to_float32(array, "bfloat16")` widens it.
"""

import numpy as np

from . import _backend
from ._backend import _C

# safetensors dtype codes -> the C core's dtype names
_CODES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "I64": "int64", "U8": "uint8"}


class Tensor(_C.Tensor):
    __slots__ = ()

    def to(self, device):
        """This tensor on device ('cpu' or 'cuda'); a copy when it moves. RuntimeError naming
        the reason when CUDA is unavailable."""
        if device != "cpu":
            _backend.cuda_status()  # opens the CUDA backend once
        return super().to(device)


def _dtype_name(dtype):
    return _CODES.get(dtype, dtype)


def to_float32(array, dtype=None):
    """array (float16, float32, int32, int64, uint8, or uint16 holding dtype='bfloat16' /
    'BF16') widened to a new float32 array. Exact; C, OpenMP-parallel."""
    array = np.require(array, requirements=["C", "A"])
    name = None if dtype is None else _dtype_name(dtype)
    return Tensor.from_numpy(array, dtype=name).astype("float32").numpy()


def from_float32(array, dtype):
    """A float32 array narrowed to dtype 'float16' or 'bfloat16' (returned as uint16),
    round-to-nearest-even, bit-identical to NumPy (float16) and PyTorch (bfloat16)."""
    array = np.require(array, dtype=np.float32, requirements=["C", "A"])
    return Tensor.from_numpy(array).astype(_dtype_name(dtype)).numpy()

"""lorafast.Tensor: dtypes, shapes, zero-copy exchange with NumPy, device copies."""

import gc
import subprocess
import sys

import numpy as np
import pytest

import lorafast
from lorafast import Tensor

DTYPES = [
    (np.float32, "float32", 4),
    (np.float16, "float16", 2),
    (np.int32, "int32", 4),
    (np.int64, "int64", 8),
    (np.uint8, "uint8", 1),
]


@pytest.mark.parametrize("np_dtype,name,size", DTYPES)
def test_from_numpy_dtype_shape_and_zero_copy(np_dtype, name, size):
    a = np.arange(24).astype(np_dtype).reshape(2, 3, 4)
    t = Tensor.from_numpy(a)
    assert (t.dtype, t.shape, t.ndim, t.nbytes, t.device) == (name, (2, 3, 4), 3, 24 * size, "cpu")
    view = t.numpy()
    assert view.dtype == np_dtype and view.shape == (2, 3, 4)
    assert np.shares_memory(view, a)
    view[1, 2, 3] = 7
    assert a[1, 2, 3] == 7  # one buffer, both ways


def test_bfloat16_lives_in_uint16_arrays():
    bits = np.array([0x3F80, 0xC000], np.uint16)
    t = Tensor.from_numpy(bits, dtype="bfloat16")
    assert t.dtype == "bfloat16" and t.nbytes == 4
    assert t.numpy().dtype == np.uint16 and np.shares_memory(t.numpy(), bits)
    assert t.astype("float32").numpy().tolist() == [1.0, -2.0]


def test_scalar_and_empty_tensors():
    t = Tensor.from_numpy(np.array(2.5, np.float32))
    assert t.shape == () and t.nbytes == 4 and t.numpy() == 2.5
    e = Tensor.from_numpy(np.zeros((0, 5), np.int64))
    assert e.shape == (0, 5) and e.nbytes == 0 and e.numpy().shape == (0, 5)


def test_tensor_keeps_its_array_alive():
    t = Tensor.from_numpy(np.full(1000, 3.0, np.float32))
    gc.collect()
    assert np.all(t.numpy() == 3.0)
    view = t.numpy()
    del t
    gc.collect()
    assert np.all(view == 3.0)


def test_read_only_arrays_stay_read_only():
    a = np.zeros(4, np.float32)
    a.flags.writeable = False
    assert not Tensor.from_numpy(a).numpy().flags.writeable


def test_astype_converts_and_same_dtype_is_identity():
    a = np.linspace(-3, 3, 1001, dtype=np.float32)
    t = Tensor.from_numpy(a)
    assert t.astype("float32") is t
    h = t.astype("float16")
    assert h.dtype == "float16" and np.array_equal(h.numpy(), a.astype(np.float16))
    assert np.array_equal(h.astype("float32").numpy(), a.astype(np.float16).astype(np.float32))
    assert isinstance(h, Tensor)  # subclass survives


@pytest.mark.parametrize(
    "array,kwargs,error,match",
    [
        (np.zeros((4, 4), np.float32)[:, ::2], {}, ValueError, "C-contiguous"),
        (np.zeros(3, np.float64), {}, TypeError, "unsupported array dtype"),
        (np.zeros(3, np.uint16), {}, TypeError, "bfloat16"),
        (np.zeros(3, np.float32), {"dtype": "bfloat16"}, TypeError, "needs a"),
        (np.zeros(3, np.float32), {"dtype": "f32"}, ValueError, "unknown dtype 'f32'"),
        (np.zeros((1,) * 9, np.float32), {}, ValueError, "9 dimensions"),
        (np.zeros(3, ">f4"), {}, ValueError, "byte order"),
        ([1.0, 2.0], {}, TypeError, "numpy array"),
    ],
)
def test_from_numpy_rejects_bad_input(array, kwargs, error, match):
    with pytest.raises(error, match=match):
        Tensor.from_numpy(array, **kwargs)


def test_device_arguments():
    t = Tensor.from_numpy(np.ones(3, np.float32))
    assert t.to("cpu") is t
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        t.to("tpu")
    with pytest.raises(ValueError, match="int32"):
        t.astype("int32")


def test_cuda_round_trip_or_clear_unavailable_error():
    a = np.arange(10_000, dtype=np.float32)
    t = Tensor.from_numpy(a)
    if not lorafast.build_info()["cuda_available"]:
        with pytest.raises(RuntimeError, match="CUDA unavailable"):
            t.to("cuda")
        return
    g = t.to("cuda")
    assert g.device == "cuda" and g.shape == t.shape and g.to("cuda") is g
    with pytest.raises(ValueError, match="to\\('cpu'\\)"):
        g.numpy()
    back = g.to("cpu")
    assert back.device == "cpu" and np.array_equal(back.numpy(), a) and not np.shares_memory(back.numpy(), a)


def test_bad_input_does_not_crash_a_fresh_interpreter():
    code = """
import numpy as np
from lorafast import Tensor
for bad in (None, np.zeros(3, object), np.zeros((2, 2))[::2]):
    try:
        Tensor.from_numpy(bad)
    except (TypeError, ValueError):
        pass
try:
    Tensor.from_numpy(np.zeros(1, np.float32)).to("cuda")
except RuntimeError:
    pass
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_arena_hands_out_aligned_zeroed_tensors_until_full():
    arena = lorafast.Arena(1000)
    assert arena.capacity == 1024 and arena.used == 0 and arena.device == "cpu"
    a = arena.tensor((3, 5), "float32")
    b = arena.tensor([7], dtype="int64")
    assert a.shape == (3, 5) and a.dtype == "float32" and b.dtype == "int64"
    assert arena.used == 64 + 64  # 60 and 56 bytes, each rounded up to 64
    for t in (a, b):
        view = t.numpy()
        assert view.ctypes.data % 64 == 0 and not view.any()
    assert b.numpy().ctypes.data - a.numpy().ctypes.data == 64
    a.numpy()[:] = 1
    assert not b.numpy().any()  # pieces do not overlap
    with pytest.raises(MemoryError, match="no room for Arena.tensor"):
        arena.tensor((1000,), "float32")
    assert arena.used == 128  # a failed request takes nothing
    arena.reset()
    assert arena.used == 0 and arena.tensor((16,)).numpy().ctypes.data == a.numpy().ctypes.data


def test_arena_tensors_keep_the_arena_alive():
    arena = lorafast.Arena(4096)
    view = arena.tensor((256,), "float32").numpy()
    del arena
    gc.collect()
    view[:] = 2.0  # the block is still there
    assert view.sum() == 512.0


def test_arena_rejects_bad_arguments():
    arena = lorafast.Arena(256)
    with pytest.raises(ValueError, match="unknown dtype 'float64'"):
        arena.tensor((2,), "float64")
    with pytest.raises(ValueError, match="negative extent"):
        arena.tensor((2, -1))
    with pytest.raises(ValueError, match="9 dimensions"):
        arena.tensor((1,) * 9)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        lorafast.Arena(-1)
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        lorafast.Arena(64, "gpu")
    if not lorafast.build_info()["cuda_available"]:
        with pytest.raises(RuntimeError, match="CUDA unavailable"):
            lorafast.Arena(64, "cuda")
    else:
        g = lorafast.Arena(1 << 20, "cuda").tensor((4,))
        assert g.device == "cuda" and g.to("cpu").numpy().shape == (4,)


def test_astype_between_half_formats_goes_through_float32():
    import torch

    a = np.random.default_rng(0).standard_normal(100_000).astype(np.float16)
    bf16 = Tensor.from_numpy(a).astype("bfloat16").numpy()
    assert np.array_equal(bf16, torch.from_numpy(a).bfloat16().view(torch.int16).numpy().view(np.uint16))
    back = Tensor.from_numpy(bf16, dtype="bfloat16").astype("float16").numpy()
    assert np.array_equal(back, torch.from_numpy(bf16.view(np.int16)).view(torch.bfloat16).half().numpy())

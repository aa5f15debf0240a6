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

"""f16 / bf16 <-> f32 conversion of the C core against NumPy and PyTorch, bit for bit.

NaN payloads: lorafast follows NumPy's float16 conversion, which keeps a NaN's payload bits
and does not set the quiet bit; PyTorch (like hardware F16C) quiets signalling NaNs. So for
NaN inputs the tests require a NaN with the reference's sign and, against NumPy, the same
payload apart from the quiet bit (against PyTorch's float32 -> float16, whose payload rule
differs, only NaN-ness and sign). Every other value (infinities, zeros, subnormals, ties,
overflow) must be bit-identical.
bfloat16 -> float32 is bit-identical to PyTorch for all 65,536 patterns, NaNs included.
"""

import numpy as np
import pytest
import torch

from lorafast.convert import from_float32, to_float32

ALL16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def f16_nan(bits):
    return (bits & 0x7C00) == 0x7C00 and (bits & 0x03FF) != 0


def assert_f32_bits_equal(ours, ref, quiet_bit=0x00400000):
    ours, ref = ours.view(np.uint32), ref.view(np.uint32)
    nan = np.isnan(ref.view(np.float32))
    assert np.array_equal(np.isnan(ours.view(np.float32)), nan)
    assert np.array_equal(ours[~nan], ref[~nan])
    assert np.array_equal(ours[nan] | quiet_bit, ref[nan] | quiet_bit)


def assert_16_bits_equal(ours, ref, is_nan, quiet_bit, payload=True):
    """Non-NaN bit-identical; NaN: a NaN of the same sign, with the same payload apart from
    the quiet bit when payload is set."""
    ours, ref = ours.view(np.uint16), ref.view(np.uint16)
    assert np.array_equal(ours[~is_nan], ref[~is_nan])
    assert np.array_equal(ours[is_nan] & 0x8000, ref[is_nan] & 0x8000)
    if payload:
        assert np.array_equal(ours[is_nan] | quiet_bit, ref[is_nan] | quiet_bit)
    exponent = np.uint16(0x7F80 if quiet_bit == 0x0040 else 0x7C00)
    assert np.all((ours[is_nan] & exponent) == exponent) and np.all((ours[is_nan] & ~exponent & 0x7FFF) != 0)


def float32_sweep(low_bits, keep):
    """Every float32 whose top (32 - low_bits) bits take every value and whose low bits are each
    of keep: every exponent and sign, with exact ties and their neighbours for rounding."""
    high = np.arange(1 << (32 - low_bits), dtype=np.uint64) << np.uint64(low_bits)
    return (high[:, None] | np.array(keep, dtype=np.uint64)[None, :]).ravel().astype(np.uint32)


def test_f16_to_f32_all_patterns_equal_numpy_and_torch():
    ours = to_float32(ALL16.view(np.float16))
    assert ours.dtype == np.float32 and ours.shape == (65536,)
    assert_f32_bits_equal(ours, ALL16.view(np.float16).astype(np.float32))
    assert_f32_bits_equal(ours, torch.from_numpy(ALL16.view(np.float16)).float().numpy())
    # NumPy's rule exactly: the payload moves up 13 bits, no quiet bit added
    nan = np.array([f16_nan(b) for b in (0x7C01, 0xFE00, 0x7D55)])
    assert nan.all()
    assert to_float32(np.array([0x7C01, 0xFE00, 0x7D55], np.uint16).view(np.float16)).view(np.uint32).tolist() == [
        0x7F802000,
        0xFFC00000,
        0x7FAAA000,
    ]


def test_f32_to_f16_rounding_equals_numpy_and_torch():
    bits = np.concatenate([float32_sweep(13, [0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF]), ALL16.astype(np.uint32) << 13])
    x = bits.view(np.float32)
    ours = from_float32(x, "float16")
    assert ours.dtype == np.float16 and ours.shape == x.shape
    is_nan = np.isnan(x)
    with np.errstate(over="ignore"):
        assert_16_bits_equal(ours, x.astype(np.float16), is_nan, quiet_bit=0x0200)
    # PyTorch drops the payload bits that do not fit and sets the quiet bit; NumPy keeps a
    # payload that would vanish as 1: only NaN-ness and sign are compared with PyTorch
    assert_16_bits_equal(ours, torch.from_numpy(x).half().numpy(), is_nan, quiet_bit=0x0200, payload=False)


def test_f16_round_trip_is_identity_on_all_patterns():
    back = from_float32(to_float32(ALL16.view(np.float16)), "float16").view(np.uint16)
    assert np.array_equal(back, ALL16)  # payloads survive both ways


def test_bf16_to_f32_all_patterns_equal_torch():
    ours = to_float32(ALL16, "bfloat16")
    ref = torch.from_numpy(ALL16.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32))  # NaNs included
    assert np.array_equal(to_float32(ALL16, "BF16"), ours, equal_nan=True)


def test_f32_to_bf16_rounding_equals_torch():
    bits = np.concatenate(
        [float32_sweep(16, [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF]), ALL16.astype(np.uint32) << 16]
    )
    x = bits.view(np.float32)
    ours = from_float32(x, "bfloat16")
    assert ours.dtype == np.uint16
    ref = torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)
    is_nan = np.isnan(x)
    # torch's vectorised path turns every NaN into 0xFFFF, its scalar path into 0x7FC0; both
    # are NaNs. lorafast keeps the sign and top payload bits and sets the quiet bit.
    assert np.array_equal(ours[~is_nan], ref[~is_nan])
    assert np.array_equal(ours[is_nan], ((bits[is_nan] >> 16) | 0x0040).astype(np.uint16))
    assert np.isnan(to_float32(ours[is_nan], "bfloat16")).all()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_integer_to_f32_equals_numpy(dtype):
    info = np.iinfo(dtype)
    x = np.random.default_rng(0).integers(info.min, info.max, size=100_003, dtype=dtype, endpoint=True)
    x[:2] = [info.min, info.max]
    assert np.array_equal(to_float32(x), x.astype(np.float32))


def test_conversion_keeps_shape_including_0d_and_empty():
    assert to_float32(np.array(1.5, np.float16)).shape == ()
    assert to_float32(np.zeros((0, 3), np.uint16), "bfloat16").shape == (0, 3)
    assert from_float32(np.ones((2, 1, 3), np.float32), "bfloat16").shape == (2, 1, 3)


def test_conversion_bad_arguments_raise():
    with pytest.raises(TypeError, match="bfloat16"):
        to_float32(np.zeros(3, np.uint16))  # uint16 needs dtype="bfloat16"
    with pytest.raises(TypeError, match="needs a"):
        to_float32(np.zeros(3, np.float32), "bfloat16")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        to_float32(np.zeros(3, np.float32), "float8")
    with pytest.raises(ValueError, match="int32"):
        from_float32(np.zeros(3, np.float32), "int32")
    with pytest.raises(TypeError, match="unsupported array dtype"):
        to_float32(np.zeros(3, np.float64))

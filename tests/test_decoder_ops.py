"""Parity of the decoder's op families (RMSNorm, RoPE, SwiGLU), forward and backward, with
transformers' Llama modules and torch autograd."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

from lorafast import _C

RTOL, ATOL = 1e-5, 1e-5


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_rmsnorm_forward_backward_matches_llama_rmsnorm():
    x, w, dy = f32(7, 48, seed=1), f32(48, seed=2), f32(7, 48, seed=3)
    ref = LlamaRMSNorm(48, eps=1e-5)
    ref.weight.data = torch.from_numpy(w.copy())
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = ref(xt)
    yt.backward(torch.from_numpy(dy))
    out, rstd = _C.rmsnorm_forward(x, w, 1e-5)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    dx, dw = _C.rmsnorm_backward(dy, x, w, rstd)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("theta", [10000.0, 1e6])
def test_rope_forward_backward_matches_llama_rotary(theta):
    T, H, D = 11, 3, 16
    config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, rope_theta=theta)
    rotary = LlamaRotaryEmbedding(config)
    pos = np.array([0, 1, 2, 3, 4, 0, 1, 5, 6, 7, 300], dtype=np.int32)  # two packed rows, a far position
    x, dy = f32(T, H, D, seed=4), f32(T, H, D, seed=5)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    cos, sin = rotary(xt, torch.from_numpy(pos.astype(np.int64))[None])
    # HF layout: (B, H, T, D); cos/sin (B, T, D)
    yt, _ = apply_rotary_pos_emb(xt.transpose(0, 1)[None], xt.transpose(0, 1)[None], cos, sin)
    yt = yt[0].transpose(0, 1)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(_C.rope(x, pos, theta, False), yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(_C.rope(dy, pos, theta, True), xt.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_silu_mul_forward_backward_matches_torch():
    g, u, dy = f32(9, 40, seed=6) * 3, f32(9, 40, seed=7), f32(9, 40, seed=8)
    gt = torch.from_numpy(g.copy()).requires_grad_()
    ut = torch.from_numpy(u.copy()).requires_grad_()
    yt = torch.nn.functional.silu(gt) * ut
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(_C.silu_mul_forward(g, u), yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    dg, du = _C.silu_mul_backward(dy, g, u)
    np.testing.assert_allclose(dg, gt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(du, ut.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_op_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="weight"):
        _C.rmsnorm_forward(f32(2, 4), f32(5), 1e-5)
    with pytest.raises(ValueError, match="x must be"):
        _C.rmsnorm_forward(f32(2, 4).astype(np.float64), f32(4), 1e-5)
    with pytest.raises(ValueError, match="positions"):
        _C.rope(f32(3, 1, 4), np.zeros(2, np.int32), 1e4, False)
    with pytest.raises(ValueError, match="even"):
        _C.rope(f32(3, 1, 5), np.zeros(3, np.int32), 1e4, False)
    with pytest.raises(ValueError, match="one shape"):
        _C.silu_mul_forward(f32(2, 4), f32(2, 3))


def test_random_normal_fill_bf16_f16_are_the_f32_stream_rounded():
    a, b, h = np.empty(100_003, np.float32), np.empty(100_003, np.uint16), np.empty(100_003, np.float16)
    for x in (a, b, h):
        _C.random_normal_fill(x, 0.0, 0.02, 7, 3)
    assert abs(a.mean()) < 3e-4 and abs(a.std() - 0.02) < 3e-4
    bits = torch.from_numpy(a).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(b, bits)
    np.testing.assert_array_equal(h, a.astype(np.float16))
    other = np.empty_like(a)
    _C.random_normal_fill(other, 0.0, 0.02, 7, 4)
    assert not np.array_equal(a, other)
    with pytest.raises(ValueError, match="dtype"):
        _C.random_normal_fill(np.empty(3, np.float64), 0.0, 1.0, 0, 0)

"""The shared CPU ops (csrc/ops/) against torch: attention over packed sequences (GQA, causal,
sliding window), matmul with f32/f16/bf16 weights, LayerNorm, GELU, dropout statistics."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lorafast import _C  # noqa: E402


def torch_attention(q, k, v, offsets, nh, nkv, causal, window):
    """Reference: each sequence alone, masked softmax(q k^T / sqrt(d)) v with repeated kv heads."""
    hd = q.shape[1] // nh
    outs = []
    for b in range(len(offsets) - 1):
        s, e = offsets[b], offsets[b + 1]
        n = e - s
        qh = q[s:e].view(n, nh, hd).transpose(0, 1)
        kh = k[s:e].view(n, nkv, hd).transpose(0, 1).repeat_interleave(nh // nkv, 0)
        vh = v[s:e].view(n, nkv, hd).transpose(0, 1).repeat_interleave(nh // nkv, 0)
        scores = qh @ kh.transpose(1, 2) / hd**0.5
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        allowed = torch.ones(n, n, dtype=torch.bool)
        if causal:
            allowed &= j <= i
        if window > 0:
            allowed &= j > i - window
        scores = scores.masked_fill(~allowed, float("-inf"))
        outs.append((scores.softmax(-1) @ vh).transpose(0, 1).reshape(n, nh * hd))
    return torch.cat(outs)


@pytest.mark.parametrize(
    "nh,nkv,hd,causal,window",
    [(3, 3, 8, False, 0), (4, 2, 16, True, 0), (8, 1, 4, True, 3), (2, 2, 9, False, 0), (6, 3, 5, True, 5)],
)
def test_attention_matches_torch(nh, nkv, hd, causal, window):
    rng = np.random.default_rng(nh * 100 + hd)
    lengths = [1, 7, 19, 2, 33]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    T = int(offsets[-1])
    q = rng.standard_normal((T, nh * hd)).astype(np.float32)
    k = rng.standard_normal((T, nkv * hd)).astype(np.float32)
    v = rng.standard_normal((T, nkv * hd)).astype(np.float32)
    dout = rng.standard_normal((T, nh * hd)).astype(np.float32)
    out, lse = _C.op_attention_forward(q, k, v, offsets, nh, nkv, causal, window)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    ref = torch_attention(tq, tk, tv, offsets.tolist(), nh, nkv, causal, window)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    ref.backward(torch.tensor(dout))
    dq, dk, dv = _C.op_attention_backward(dout, out, lse, q, k, v, offsets, nh, nkv, causal, window)
    for ours, theirs in ((dq, tq.grad), (dk, tk.grad), (dv, tv.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_attention_rejects_bad_offsets():
    q = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError):
        _C.op_attention_forward(q, q, q, np.array([0, 3], np.int32), 2, 2, False, 0)
    with pytest.raises(ValueError):
        _C.op_attention_forward(q, q, q, np.array([0, 2, 2, 4], np.int32), 2, 2, False, 0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_matmul_with_stored_dtypes(dtype):
    rng = np.random.default_rng(1)
    T, C, OC = 13, 70, 300  # OC > the conversion block: several blocks
    x = rng.standard_normal((T, C)).astype(np.float32)
    w32 = rng.standard_normal((OC, C)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    tw = torch.tensor(w32).to(getattr(torch, dtype))
    w = tw.view(torch.uint16).numpy() if dtype == "bfloat16" else tw.numpy()
    wf = tw.float()
    tx = torch.tensor(x, requires_grad=True)
    ref = tx @ wf.T + torch.tensor(b)
    out = _C.op_matmul_forward(x, w, dtype, b)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-5, atol=1e-4)
    dout = rng.standard_normal((T, OC)).astype(np.float32)
    ref.backward(torch.tensor(dout))
    dx, dw, db = _C.op_matmul_backward(dout, x, w, dtype)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(db, dout.sum(0), rtol=1e-5, atol=1e-4)
    if dtype == "float32":
        np.testing.assert_allclose(dw, dout.T @ x, rtol=1e-5, atol=1e-4)


def test_layernorm_matches_torch():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((9, 37)) * 3 + 1).astype(np.float32)
    w = rng.standard_normal(37).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    dout = rng.standard_normal((9, 37)).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = torch.nn.functional.layer_norm(tx, (37,), tw, tb, 1e-5)
    np.testing.assert_allclose(_C.op_layernorm(x, w, b, 1e-5), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    ref.backward(torch.tensor(dout))
    dx, dw, db = _C.op_layernorm(x, w, b, 1e-5, dout)
    for ours, theirs in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_gelu_matches_torch():
    x = np.linspace(-8, 8, 2001).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.gelu(tx)
    np.testing.assert_allclose(_C.op_gelu(x), ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    dout = np.cos(x).astype(np.float32)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(_C.op_gelu(x, dout), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keep_rate_and_scaling(p):
    n = 400_000
    x = np.linspace(1.0, 2.0, n).astype(np.float32)
    out = _C.op_dropout(x, p, 1234)
    kept = out != 0
    # keep rate within 5 standard deviations of the binomial
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)
    # a different key gives a different mask; the same key the same mask
    assert (_C.op_dropout(x, p, 1235) != 0).tolist() != kept.tolist()
    np.testing.assert_array_equal(_C.op_dropout(x, p, 1234), out)
    # no correlation between neighbouring elements' masks
    a, b = kept[:-1].astype(float), kept[1:].astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    np.testing.assert_array_equal(_C.op_dropout(x, 0.0, 1), x)


@pytest.mark.parametrize("n", [1, 64, 4096 + 64 * 3 + 17])
def test_dropout_mask_kept_as_bits_is_dropout_forwards_mask(n):
    """ops/dropout.c: the mask drawn once into bits (the LoRA branch's input dropout) gives
    dropout_forward's values bit for bit, and applying it from the bits (backward) is dropout of the
    gradient with the same mask, written or added; the bits are the kept elements."""
    rng = np.random.default_rng(n)
    x, dout = rng.standard_normal((2, n)).astype(np.float32) + 3.0  # no zero: kept == nonzero
    p, key = 0.3, 99
    out, bits, din, total = _C.op_dropout_bits(x, p, key, dout)
    np.testing.assert_array_equal(out, _C.op_dropout(x, p, key))
    np.testing.assert_array_equal(din, _C.op_dropout(dout, p, key))
    np.testing.assert_array_equal(total, x + _C.op_dropout(dout, p, key))
    kept = ((bits[np.arange(n) // 64] >> (np.arange(n) % 64).astype(np.uint64)) & np.uint64(1)).astype(bool)
    np.testing.assert_array_equal(kept, out != 0)
    if n > 64:
        assert 0 < kept.sum() < n
    with pytest.raises(ValueError, match="one shape"):
        _C.op_dropout_bits(x, p, key, dout[:-1].copy() if n > 1 else np.zeros(2, np.float32))


def test_attention_probability_dropout_keep_rate_scaling_and_gradients():
    """Dropout on the attention probabilities (BERT/RoBERTa attention_probs_dropout_prob): the
    mask is a function of (key, head, query, key position) only, so q = 0 (uniform
    probabilities) and v = identity read it off; then forward and backward on random q, k, v
    equal torch's softmax(q k^T / sqrt(d)) * mask @ v with that mask."""
    p, nh, n = 0.25, 2, 48
    offsets = np.array([0, n], np.int32)
    eye = np.tile(np.eye(n, dtype=np.float32), (1, nh))  # head h of token j: one-hot j
    zeros = np.zeros((n, nh * n), np.float32)
    out, _ = _C.op_attention_forward(zeros, zeros, eye, offsets, nh, nh, False, 0, p, 99)
    mask = out.reshape(n, nh, n).transpose(1, 0, 2) * n  # (h, i, j): 0 or 1 / (1 - p)
    kept = mask != 0
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / kept.size)
    np.testing.assert_allclose(mask[kept], 1 / (1 - p), rtol=1e-5)
    same, _ = _C.op_attention_forward(zeros, zeros, eye, offsets, nh, nh, False, 0, p, 99)
    other, _ = _C.op_attention_forward(zeros, zeros, eye, offsets, nh, nh, False, 0, p, 100)
    np.testing.assert_array_equal(same, out)
    assert ((other != 0) != (out != 0)).any()

    rng = np.random.default_rng(3)
    hd = 8
    q, k, v, dout = (rng.standard_normal((n, nh * hd)).astype(np.float32) for _ in range(4))
    out, lse = _C.op_attention_forward(q, k, v, offsets, nh, nh, False, 0, p, 99)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    qh, kh, vh = (t.view(n, nh, hd).transpose(0, 1) for t in (tq, tk, tv))
    ref = ((qh @ kh.transpose(1, 2) / hd**0.5).softmax(-1) * torch.tensor(mask)) @ vh
    ref = ref.transpose(0, 1).reshape(n, nh * hd)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    ref.backward(torch.tensor(dout))
    grads = _C.op_attention_backward(dout, out, lse, q, k, v, offsets, nh, nh, False, 0, p, 99)
    for ours, theirs in zip(grads, (tq.grad, tk.grad, tv.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="dropout"):
        _C.op_attention_forward(q, k, v, offsets, nh, nh, False, 0, 1.0, 0)
    with pytest.raises(ValueError, match="lse"):
        _C.op_attention_backward(dout, out, lse[:-1], q, k, v, offsets, nh, nh, False, 0)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout_residual_layernorm_is_the_chain_and_matches_torch(p):
    """The fused encoder sublayer end equals dropout, residual add and LayerNorm in turn (bit for bit,
    as the CUDA twin is compared with it exactly) and torch's gradients through that chain."""
    rng = np.random.default_rng(7)
    T, C, key = 11, 45, 99
    branch = (rng.standard_normal((T, C)) * 2).astype(np.float32)
    residual = rng.standard_normal((T, C)).astype(np.float32)
    w = rng.standard_normal(C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    dout = rng.standard_normal((T, C)).astype(np.float32)
    out, total = _C.op_dropout_residual_layernorm(branch, residual, w, b, 1e-5, p, key)
    chain_sum = _C.op_dropout(branch.ravel(), p, key).reshape(T, C) + residual
    np.testing.assert_array_equal(total, chain_sum)
    np.testing.assert_array_equal(out, _C.op_layernorm(chain_sum, w, b, 1e-5))
    if p > 0:
        assert (_C.op_dropout(branch.ravel(), p, key) == 0).any()  # some element really dropped
    # gradients: torch through the same mask
    scale = _C.op_dropout(np.ones(T * C, np.float32), p, key).reshape(T, C)
    tbr, tres, tw, tb = (torch.tensor(a, requires_grad=True) for a in (branch, residual, w, b))
    ref = torch.nn.functional.layer_norm(tbr * torch.tensor(scale) + tres, (C,), tw, tb, 1e-5)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    ref.backward(torch.tensor(dout))
    dres, dbr, dw, db = _C.op_dropout_residual_layernorm(branch, residual, w, b, 1e-5, p, key, dout)
    for ours, theirs in ((dres, tres.grad), (dbr, tbr.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)
    # and the unfused chain's gradients exactly
    dx, dw_chain, db_chain = _C.op_layernorm(chain_sum, w, b, 1e-5, dout)
    np.testing.assert_array_equal(dres, dx)
    np.testing.assert_array_equal(dbr, dx * scale)
    np.testing.assert_array_equal(dw, dw_chain)
    np.testing.assert_array_equal(db, db_chain)
    with pytest.raises(ValueError, match="residual"):
        _C.op_dropout_residual_layernorm(branch, residual[:, 1:], w, b, 1e-5, p, key)

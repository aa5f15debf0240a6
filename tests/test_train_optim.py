"""AdamW, clipping by global norm and the LR schedules of csrc/train against torch / transformers."""

import numpy as np
import pytest

from lorafast._backend import _C

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("weight_decay", [0.0, 0.001, 0.1])
@pytest.mark.parametrize("lr", [1e-4, 3e-2])
def test_adamw_equals_torch(weight_decay, lr):
    rng = np.random.default_rng(0)
    shapes = [(37,), (5, 16), (1000,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ref = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = torch.optim.AdamW(ref, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    ours = [p.reshape(-1).copy() for p in params]
    m = [np.zeros_like(p) for p in ours]
    v = [np.zeros_like(p) for p in ours]
    for step in range(1, 31):
        grads = [rng.standard_normal(s).astype(np.float32) * 10 ** rng.uniform(-4, 1) for s in shapes]
        for r, g in zip(ref, grads):
            r.grad = torch.from_numpy(g.copy())
        opt.step()
        for p, g, mi, vi in zip(ours, grads, m, v):
            _C.adamw_update(p, g.reshape(-1).copy(), mi, vi, step, lr, 0.9, 0.999, 1e-8, weight_decay)
    for p, r in zip(ours, ref):
        np.testing.assert_allclose(p, r.detach().numpy().reshape(-1), rtol=2e-6, atol=1e-7)
    st = opt.state[ref[1]]
    np.testing.assert_allclose(m[1], st["exp_avg"].numpy().reshape(-1), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(v[1], st["exp_avg_sq"].numpy().reshape(-1), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("max_norm", [0.3, 1.0, 1e3])
def test_clip_equals_torch(max_norm):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(n).astype(np.float32) * 0.2 for n in (10, 300, 7)]
    ref = [torch.zeros(len(g), requires_grad=True) for g in grads]
    for r, g in zip(ref, grads):
        r.grad = torch.from_numpy(g.copy())
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm).item()
    norm = _C.clip_grad_norm(grads, max_norm)
    assert norm == pytest.approx(ref_norm, rel=1e-6)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r.grad.numpy(), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="grads"):
        _C.clip_grad_norm([np.zeros(3)], 1.0)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup,total", [(0, 30), (3, 30), (10, 11), (381, 3810)])
def test_schedule_equals_transformers(kind, warmup, total):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = transformers.get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total + 2):
        assert _C.lr_schedule_factor(kind, step, warmup, total) == sched.lr_lambdas[0](step), (kind, step)
    with pytest.raises(ValueError, match="polynomial"):
        _C.lr_schedule_factor("polynomial", 0, 0, 1)


def test_updates_per_epoch_like_hf():
    # HF 5: len(dataloader) // GA + (remainder > 0), at least 1
    assert _C.updates_per_epoch(6090, 8, False, 1) == (762, 762)
    assert _C.updates_per_epoch(6090, 8, True, 1) == (761, 761)
    assert _C.updates_per_epoch(10, 4, False, 2) == (3, 2)
    assert _C.updates_per_epoch(3, 4, True, 1) == (0, 1)


def test_loss_scale_equals_torch_grad_scaler():
    """fp16's dynamic loss scale after each update, against the op torch.amp.GradScaler.update runs
    (torch._amp_update_scale_ with GradScaler's defaults): overflows halve it, 2000 good updates in a
    row double it, an overflow restarts the count; also near float32's limits."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    # long good runs (growth), isolated and clustered overflows, a run that ends exactly at 2000
    found = np.concatenate([np.zeros(2000), [1], np.zeros(1999), [1, 1, 1], rng.random(300) < 0.3, np.zeros(4500),
                            rng.random(100) < 0.05]).astype(bool)
    for init in (65536.0, 2.0 ** 126, 2.0 ** -140):
        scale, tracker = torch.full((1,), init, dtype=torch.float32), torch.zeros(1, dtype=torch.int32)
        ours, our_tracker, scales = init, 0, set()
        for i, inf in enumerate(found):
            torch._amp_update_scale_(scale, tracker, torch.full((1,), float(inf)), 2.0, 0.5, 2000)
            ours, our_tracker = _C.loss_scale_update(ours, our_tracker, bool(inf))
            assert (ours, our_tracker) == (scale.item(), tracker.item()), f"update {i} from {init}"
            scales.add(ours)
        assert len(scales) > 5  # it grew and shrank (the test can fail)
    with pytest.raises(ValueError, match="loss scale"):
        _C.loss_scale_update(-1.0, 0, False)

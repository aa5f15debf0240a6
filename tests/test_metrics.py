"""lorafast.metrics equals scikit-learn (and evaluate's output shape)."""

import numpy as np
import pytest

from lorafast import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_equal_to_sklearn(seed, n_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y = rng.integers(0, n_classes, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, n_classes, n))
    w = rng.random(n)
    assert metrics.accuracy_score(y, p) == pytest.approx(sk.accuracy_score(y, p), rel=1e-12)
    assert metrics.accuracy_score(y, p, sample_weight=w) == pytest.approx(sk.accuracy_score(y, p, sample_weight=w))
    averages = ["macro", "micro", "weighted", None] + (["binary"] if n_classes == 2 else [])
    for name in ("precision_score", "recall_score", "f1_score"):
        for average in averages:
            for sw in (None, w):
                ours = getattr(metrics, name)(y, p, average=average, sample_weight=sw, zero_division=0)
                ref = getattr(sk, name)(y, p, average=average, sample_weight=sw, zero_division=0)
                np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15, err_msg=f"{name} {average}")


def test_zero_division_and_binary_errors():
    y, p = np.array([0, 0, 0]), np.array([0, 0, 0])
    assert metrics.precision_score(y, p, zero_division=0) == sk.precision_score(y, p, zero_division=0)
    assert metrics.f1_score(y, p, zero_division=1) == sk.f1_score(y, p, zero_division=1)
    with pytest.raises(ValueError, match="multiclass"):
        metrics.f1_score([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.f1_score([0, 1], [0])


def test_evaluate_shim():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    assert metrics.load("f1").compute(predictions=p, references=y) == {"f1": sk.f1_score(y, p)}
    assert metrics.load("precision").compute(predictions=p, references=y)["precision"] == sk.precision_score(y, p)
    m = metrics.load("accuracy")
    m.add_batch(predictions=p[:50], references=y[:50])
    m.add_batch(predictions=p[50:], references=y[50:])
    assert m.compute() == {"accuracy": sk.accuracy_score(y, p)}
    assert metrics.load("recall").compute(predictions=p, references=y, average="macro")["recall"] == pytest.approx(
        sk.recall_score(y, p, average="macro"))
    with pytest.raises(ValueError, match="bleu"):
        metrics.load("bleu")

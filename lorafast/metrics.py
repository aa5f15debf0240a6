"""Classification metrics equal to scikit-learn's, and an `evaluate`-shaped shim:
`lorafast.metrics.load("f1").compute(predictions=..., references=...)`."""

import numpy as np

__all__ = ["accuracy_score", "precision_score", "recall_score", "f1_score", "load", "Metric"]

_AVERAGES = ("binary", "macro", "micro", "weighted", None)


def _labels(y_true, y_pred):
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"predictions ({y_pred.size}) and references ({y_true.size}) differ in length")
    return y_true, y_pred


def accuracy_score(y_true, y_pred, normalize=True, sample_weight=None):
    y_true, y_pred = _labels(y_true, y_pred)
    hits = (y_true == y_pred).astype(np.float64)
    w = np.ones_like(hits) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return float((hits * w).sum() / w.sum()) if normalize else float((hits * w).sum())


def _counts(y_true, y_pred, labels, sample_weight):
    """Per-label true positives, predicted counts and true counts (float64)."""
    w = np.ones(y_true.size) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    t = np.searchsorted(labels, y_true)
    p = np.searchsorted(labels, y_pred)
    n = labels.size
    tp = np.bincount(t[y_true == y_pred], weights=w[y_true == y_pred], minlength=n)
    return tp, np.bincount(p, weights=w, minlength=n), np.bincount(t, weights=w, minlength=n)


def _divide(num, den, zero_division):
    out = np.full(np.shape(num), 0.0 if zero_division in ("warn", 0, 0.0) else float(zero_division))
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def _prf(y_true, y_pred, beta, average, pos_label, labels, sample_weight, zero_division):
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    y_true, y_pred = _labels(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    if average == "binary":
        if present.size > 2:
            raise ValueError(
                f"Target is multiclass but average='binary'. Please choose another average setting, one of "
                f"{[a for a in _AVERAGES if a != 'binary']}."
            )
        if present.size and pos_label not in present and present.size == 2:
            raise ValueError(f"pos_label={pos_label} is not a valid label. It should be one of {present.tolist()}")
        labels = np.asarray([pos_label])
    elif labels is None:
        labels = present
    labels = np.asarray(labels)
    all_labels = np.union1d(present, labels)
    tp, pred, true = _counts(y_true, y_pred, all_labels, sample_weight)
    pick = np.searchsorted(all_labels, labels)
    tp, pred, true = tp[pick], pred[pick], true[pick]
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    precision = _divide(tp, pred, zero_division)
    recall = _divide(tp, true, zero_division)
    b2 = beta * beta
    denom = b2 * precision + recall
    f = _divide((1 + b2) * precision * recall, denom, zero_division)
    if average == "weighted":
        weights = true
        if weights.sum() == 0:
            return 0.0, 0.0, 0.0
    else:
        weights = None
    if average is None:
        return precision, recall, f
    return tuple(float(np.average(m, weights=weights)) for m in (precision, recall, f))


def precision_score(y_true, y_pred, labels=None, pos_label=1, average="binary", sample_weight=None,
                    zero_division="warn"):
    return _prf(y_true, y_pred, 1.0, average, pos_label, labels, sample_weight, zero_division)[0]


def recall_score(y_true, y_pred, labels=None, pos_label=1, average="binary", sample_weight=None,
                 zero_division="warn"):
    return _prf(y_true, y_pred, 1.0, average, pos_label, labels, sample_weight, zero_division)[1]


def f1_score(y_true, y_pred, labels=None, pos_label=1, average="binary", sample_weight=None,
             zero_division="warn"):
    return _prf(y_true, y_pred, 1.0, average, pos_label, labels, sample_weight, zero_division)[2]


_FUNCTIONS = {"accuracy": accuracy_score, "precision": precision_score, "recall": recall_score, "f1": f1_score}


class Metric:
    """`evaluate.load(name)`'s object: compute(predictions=..., references=..., **kwargs) -> {name: value}."""

    def __init__(self, name):
        if name not in _FUNCTIONS:
            raise ValueError(f"unknown metric {name!r}; available: {sorted(_FUNCTIONS)}")
        self.name = name
        self._predictions, self._references = [], []

    def add_batch(self, predictions, references):
        self._predictions.append(np.asarray(predictions).reshape(-1))
        self._references.append(np.asarray(references).reshape(-1))

    def compute(self, predictions=None, references=None, **kwargs):
        if predictions is None:
            predictions = np.concatenate(self._predictions) if self._predictions else np.zeros(0)
            references = np.concatenate(self._references) if self._references else np.zeros(0)
            self._predictions, self._references = [], []
        value = _FUNCTIONS[self.name](references, predictions, **kwargs)
        return {self.name: value.tolist() if isinstance(value, np.ndarray) else value}


def load(name, *args, **kwargs):
    return Metric(name)

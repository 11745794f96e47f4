"""Evaluation metrics for every task: pure numpy, vectorized, no Ray, no torch, no scikit-learn.

Conventions
-----------
* Inputs must be finite. A NaN or infinity in `y` or in a prediction raises ValueError naming
  the argument and the count; so do mismatched lengths, labels outside their range and
  probabilities outside [0, 1]. Empty inputs are allowed and give NaN for every metric.
* Every metric is returned as a plain Python float, so a result is JSON-serializable. NaN marks
  a metric that is undefined on the data (ROC AUC with one class present, R^2 with a constant
  target, anything on zero rows); `json.dumps` writes it as the literal `NaN`.
* Classification takes probabilities. Binary: `proba` has shape (n,) and is P(class 1), `y` is
  in {0, 1} and a row is predicted positive when P(class 1) >= threshold. Multiclass: `proba`
  has shape (n, k), each row sums to 1, `y` is in 0..k-1 and the prediction is the argmax
  (lowest index on ties). `y` may be int, bool or integer-valued float.
* Where scikit-learn would warn and return 0 (precision with no predicted positives, recall
  with no actual positives) these metrics return 0 too. Where it raises or goes its own way we
  return NaN instead; the differences are listed on each function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.config.schema import Task
from keel.quality import HIGHER_IS_BETTER, PRIMARY

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "calibration_error",
)
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")

LOG_LOSS_EPS = 1e-15
MAPE_EPS = 1e-8
CALIBRATION_BINS = 10
NULL_KEY = "null"

NAN = float("nan")


# ----------------------------------------------------------------------------- validation


def _vector(name: str, a: Any) -> np.ndarray:
    """A 1-d array (an (n, 1) column is flattened)."""
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {a.shape}")
    return a


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    """`a` as float64, or ValueError if it is not numeric or holds NaN/inf."""
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise ValueError(
            f"{name} has {bad} non-finite value(s) (NaN or inf); inputs must be finite"
        )
    return a


def _same_length(y: np.ndarray, pred: np.ndarray, pred_name: str) -> None:
    if len(y) != len(pred):
        raise ValueError(f"y has {len(y)} rows but {pred_name} has {len(pred)}")


def _labels(y: Any, k: int) -> np.ndarray:
    """Class labels as int64 in 0..k-1."""
    yf = _finite("y", _vector("y", y))
    if np.any(yf != np.round(yf)):
        raise ValueError("y must hold integer class labels, got non-integer values")
    if yf.size and (yf.min() < 0 or yf.max() > k - 1):
        raise ValueError(
            f"y must hold class labels in 0..{k - 1}, got values in [{yf.min():g}, {yf.max():g}]"
        )
    return yf.astype(np.int64)


def _probabilities(proba: Any) -> np.ndarray:
    p = np.asarray(proba)
    if p.ndim not in (1, 2):
        raise ValueError(f"proba must have shape (n,) or (n, k), got {p.shape}")
    if p.ndim == 2 and p.shape[1] < 2:
        raise ValueError(f"multiclass proba needs at least 2 columns, got shape {p.shape}")
    tol = max(1e-6, float(np.sqrt(np.finfo(p.dtype).eps))) if p.dtype.kind == "f" else 1e-6
    p = _finite("proba", p)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"proba must lie in [0, 1], got values in [{p.min():g}, {p.max():g}]")
    if p.ndim == 2 and len(p):
        off = np.abs(p.sum(axis=1) - 1.0)
        if off.max() > tol:
            raise ValueError(
                f"each row of multiclass proba must sum to 1; {int(np.count_nonzero(off > tol))} "
                f"row(s) do not (largest deviation {off.max():.3g})"
            )
    return p


def _task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise ValueError(
            f"unknown task {task!r}; expected one of {[t.value for t in Task]}"
        ) from None


# ----------------------------------------------------------------------------- building blocks


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score_pos > score_neg) + 0.5 P(tie).

    Exact integer counting over groups of equal scores, so ties are handled exactly and the
    result equals the trapezoidal area under the ROC curve. NaN unless both classes occur.
    """
    n_pos = int(np.count_nonzero(positive))
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    _, group, counts = np.unique(score, return_inverse=True, return_counts=True)
    pos = np.bincount(group[positive], minlength=len(counts))
    neg = counts - pos
    neg_below = np.cumsum(neg) - neg
    twice = 2 * int(np.dot(pos, neg_below)) + int(np.dot(pos, neg))
    return twice / (2.0 * n_pos * n_neg)


def _calibration_error(prob: np.ndarray, hit: np.ndarray) -> float:
    """Expected calibration error over 10 equal-width bins of `prob`.

    Bins are [0, .1), [.1, .2), ..., [.9, 1.0]. ECE = sum over bins of
    (bin rows / n) * |mean(hit) - mean(prob)| = sum |sum(hit) - sum(prob)| / n.
    """
    n = len(prob)
    if n == 0:
        return NAN
    b = np.minimum((prob * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    gap = np.bincount(b, weights=hit, minlength=CALIBRATION_BINS) - np.bincount(
        b, weights=prob, minlength=CALIBRATION_BINS
    )
    return float(np.abs(gap).sum() / n)


def _confusion(yl: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: row = true class, column = predicted class."""
    return np.bincount(yl * k + predicted, minlength=k * k).reshape(k, k)


def _prf(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray):
    """Precision, recall and F1 per class; 0 where the denominator is 0 (as scikit-learn)."""
    tp = tp.astype(np.float64)
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    both = n_pred + n_true
    f1 = np.divide(2.0 * tp, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1


# ----------------------------------------------------------------------------- metrics


def classification(y: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, precision, recall, f1, roc_auc, log_loss, calibration_error.

    Binary (`proba` shape (n,)): precision/recall/f1 of the positive class at `threshold`
    (p >= threshold is positive); roc_auc is rank-based with ties counted half (Mann-Whitney),
    NaN when y holds one class only; calibration_error bins P(class 1) and compares it to the
    share of positives in each bin.

    Multiclass (`proba` shape (n, k)): prediction is the argmax (`threshold` is unused);
    precision/recall/f1 are macro averages over the classes that occur in y or in the
    predictions (scikit-learn's default label set); roc_auc is the macro average of one-vs-rest
    AUCs over the classes that have both positives and negatives in y, NaN when fewer than two
    classes occur (scikit-learn raises instead when some class is missing from y);
    calibration_error bins the predicted class's probability (the confidence) and compares it
    to the accuracy in each bin.

    log_loss clips probabilities to [1e-15, 1 - 1e-15]. Empty input gives NaN everywhere.
    """
    p = _probabilities(proba)
    if not np.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    k = 2 if p.ndim == 1 else p.shape[1]
    yl = _labels(y, k)
    _same_length(yl, p, "proba")
    n = len(yl)
    if n == 0:
        return dict.fromkeys(CLASSIFICATION_METRICS, NAN)

    if p.ndim == 1:
        positive = yl == 1
        predicted = p >= threshold
        tp = np.count_nonzero(positive & predicted)
        prec, rec, f1 = _prf(
            np.array([tp]),
            np.array([np.count_nonzero(predicted)]),
            np.array([np.count_nonzero(positive)]),
        )
        precision, recall, f1 = prec[0], rec[0], f1[0]
        accuracy = np.count_nonzero(positive == predicted) / n
        roc_auc = _auc(positive, p)
        p_true = np.clip(np.where(positive, p, 1.0 - p), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        ece = _calibration_error(p, positive.astype(np.float64))
    else:
        predicted = np.argmax(p, axis=1)
        confusion = _confusion(yl, predicted, k)
        n_true, n_pred = confusion.sum(axis=1), confusion.sum(axis=0)
        tp = np.diag(confusion)
        present = (n_true + n_pred) > 0
        prec, rec, f1s = _prf(tp, n_pred, n_true)
        precision, recall, f1 = (float(m[present].mean()) for m in (prec, rec, f1s))
        accuracy = tp.sum() / n
        aucs = [_auc(yl == c, p[:, c]) for c in range(k) if 0 < n_true[c] < n]
        roc_auc = float(np.mean(aucs)) if aucs else NAN
        p_true = np.clip(p[np.arange(n), yl], LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        ece = _calibration_error(p[np.arange(n), predicted], (predicted == yl).astype(float))

    return {
        "accuracy": float(accuracy),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc),
        "log_loss": float(-np.log(p_true).mean()),
        "calibration_error": float(ece),
    }


def per_class_recall(y: Any, proba: Any) -> list[float]:
    """Multiclass recall of each class (`proba` shape (n, k), prediction the argmax): the share
    of the class's rows predicted as it, in class index order; NaN for a class with no row in
    `y` (0 would read as a class the model always misses). What a macro average hides: one
    class collapsing while the others hold up."""
    p = _probabilities(proba)
    if p.ndim != 2:
        raise ValueError(f"per-class recall needs multiclass proba of shape (n, k), got {p.shape}")
    k = p.shape[1]
    yl = _labels(y, k)
    _same_length(yl, p, "proba")
    confusion = _confusion(yl, np.argmax(p, axis=1), k)
    n_true = confusion.sum(axis=1)
    return [float(tp / n) if n else NAN for tp, n in zip(np.diag(confusion), n_true, strict=True)]


def regression(y: Any, pred: Any) -> dict[str, float]:
    """rmse, mae, r2, mape.

    r2 = 1 - SS_res / SS_tot, NaN when y is constant (scikit-learn returns 1.0 or 0.0 there).
    mape = mean(|y - pred| / max(|y|, 1e-8)) as a fraction, not a percent (scikit-learn uses
    machine epsilon instead of 1e-8, which only matters for |y| < 1e-8). Empty input gives NaN.
    """
    yf = _finite("y", _vector("y", y))
    pf = _finite("pred", _vector("pred", pred))
    _same_length(yf, pf, "pred")
    if len(yf) == 0:
        return dict.fromkeys(REGRESSION_METRICS, NAN)
    err = yf - pf
    ss_res = float(np.dot(err, err))
    centred = yf - yf.mean()
    ss_tot = float(np.dot(centred, centred))
    return {
        "rmse": float(np.sqrt(ss_res / len(yf))),
        "mae": float(np.abs(err).mean()),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else NAN,
        "mape": float((np.abs(err) / np.maximum(np.abs(yf), MAPE_EPS)).mean()),
    }


def evaluate(task: Task | str, y: Any, pred: Any) -> dict[str, float]:
    """The task's metrics; `pred` is class probabilities for classification.

    For binary classification `pred` may also be an (n, 2) matrix; column 1 is used.
    """
    task = _task(task)
    if task is Task.regression:
        return regression(y, pred)
    p = np.asarray(pred)
    if task is Task.binary_classification:
        if p.ndim == 2 and p.shape[1] == 2:
            p = p[:, 1]
        if p.ndim != 1:
            raise ValueError(f"binary classification needs proba of shape (n,), got {p.shape}")
    elif p.ndim != 2:
        raise ValueError(f"multiclass classification needs proba of shape (n, k), got {p.shape}")
    return classification(y, p)


def baseline_prediction(
    task: Task | str, y_train: Any, n: int, n_classes: int | None = None
) -> np.ndarray:
    """The trivial model's predictions for `n` rows, fitted on `y_train`.

    Classification: the training class priors on every row (binary: shape (n,) of P(class 1);
    multiclass: shape (n, k), k = n_classes or max(y_train) + 1), so ROC AUC is exactly 0.5 and
    the prediction is the training majority class (ties: class 1 for binary, the lowest index
    for multiclass). Regression: the training mean on every row, so R^2 on the training data is 0.
    """
    task = _task(task)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if task is Task.regression:
        yf = _finite("y_train", _vector("y_train", y_train))
        if len(yf) == 0:
            raise ValueError("y_train is empty; a baseline needs training labels")
        return np.full(n, yf.mean())
    if task is Task.binary_classification:
        k = 2
        if n_classes not in (None, 2):
            raise ValueError(f"binary classification has 2 classes, got n_classes={n_classes}")
    else:
        yv = _finite("y_train", _vector("y_train", y_train))
        if len(yv) == 0:
            raise ValueError("y_train is empty; a baseline needs training labels")
        k = n_classes if n_classes is not None else int(yv.max()) + 1
        if k < 2:
            raise ValueError(f"multiclass classification needs n_classes >= 2, got {k}")
    yl = _labels(y_train, k)
    if len(yl) == 0:
        raise ValueError("y_train is empty; a baseline needs training labels")
    priors = np.bincount(yl, minlength=k) / len(yl)
    if task is Task.binary_classification:
        return np.full(n, priors[1])
    return np.tile(priors, (n, 1))


def _slice_keys(column: str, values: Any, n: int) -> np.ndarray:
    """Each row's slice value as a string; None/NaN/NaT -> "null"."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"slice {column!r} must be 1-dimensional, got shape {v.shape}")
    if len(v) != n:
        raise ValueError(f"slice {column!r} has {len(v)} rows but y has {n}")
    null = np.asarray(pd.isna(v), dtype=bool)
    keys = v.astype(str) if v.dtype.kind != "O" else np.array([str(x) for x in v], dtype=str)
    return np.where(null, NULL_KEY, keys) if null.any() else keys


def by_slice(
    task: Task | str,
    y: Any,
    pred: Any,
    slices: dict[str, Any],
    min_rows: int = 20,
) -> dict[str, dict[str, dict]]:
    """Metrics per value of each slice column: {column: {value: {"rows": n, **metrics, "gap"}}}.

    Values are keyed by `str(value)`, None/NaN as "null", ordered by row count (largest first,
    then by key). A value with fewer than `min_rows` rows gets {"rows": n} only. Otherwise it
    gets the task's metrics and "gap" = primary(value) - primary(overall) for PRIMARY[task],
    negated for a lower-is-better primary, so a negative gap always means worse than overall
    (NaN where either side is NaN, e.g. a binary slice holding a single class).
    """
    task = _task(task)
    y_arr = np.asarray(y)
    p_arr = np.asarray(pred)
    overall = evaluate(task, y_arr, p_arr)  # validates y and pred once, for all slices
    primary = PRIMARY[task]
    sign = 1.0 if primary in HIGHER_IS_BETTER else -1.0
    n = len(y_arr)

    out: dict[str, dict[str, dict]] = {}
    for column, values in slices.items():
        keys = _slice_keys(column, values, n)
        uniq, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
        by_group = np.argsort(group, kind="stable")  # row indices, grouped
        ends = np.cumsum(counts)
        result: dict[str, dict] = {}
        for g in np.lexsort((uniq, -counts)):  # most rows first, then by key
            rows = int(counts[g])
            entry: dict[str, Any] = {"rows": rows}
            if rows >= min_rows:
                idx = by_group[ends[g] - rows : ends[g]]
                metrics = evaluate(task, y_arr[idx], p_arr[idx])
                entry.update(metrics)
                entry["gap"] = float(sign * (metrics[primary] - overall[primary]))
            result[str(uniq[g])] = entry
        out[column] = result
    return out

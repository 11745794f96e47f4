"""Quality estimated without labels: what a version's validation split says about its own
errors, fitted when the version is trained, stored in its bundle (estimator.json) and applied
by `keel monitor` to a window of predictions before any feedback arrives (or when none will).

Classification: confidence-based performance estimation (CBPE). The version's scores are
calibrated on the validation split (isotonic regression, per class one-vs-rest for multiclass).
On a window, a row's calibrated probability is its expected share of a hit, so the expected
confusion matrix, and from it accuracy, precision, recall and F1, are sums of probabilities;
ROC AUC is the area under the expected ROC curve.

Regression: direct loss estimation (DLE). Two small gradient-boosted models (LightGBM) of a
row's absolute and squared error, fitted on the validation split's features and prediction,
give a window's expected MAE and RMSE.

Both assume that labels follow inputs as they did in training. They see a change in the
inputs (covariate shift) and what it does to the model; a change in how labels follow the
inputs (concept shift) with the inputs unchanged is invisible to them (`BLIND_TO`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from keel.config.schema import ESTIMATED, Task

MIN_ROWS = 30  # validation rows below which no estimator is fitted: too few to calibrate on
THRESHOLD = 0.5  # binary: positive when P(positive) >= it, as the quality metrics decide
BLIND_TO = (
    "estimation assumes labels follow inputs as in training: a change in that relation without "
    "a change in the inputs (concept shift) is invisible to it; only feedback (the quality "
    "check) shows it"
)


class Method(StrEnum):
    """How a version estimates its quality without labels."""

    cbpe = "cbpe"  # confidence-based: calibrated probabilities (classification)
    dle = "dle"  # direct loss estimation: a model of the error (regression)


@dataclass(frozen=True)
class Estimate:
    """A window's estimated quality."""

    method: Method
    rows: int  # predictions it was estimated from
    metrics: dict[str, float]  # ESTIMATED[task] -> estimated value
    confusion: list[list[float]] | None = None  # expected counts: row true, column predicted


@dataclass(frozen=True)
class Calibration:
    """CBPE: isotonic maps from a score to P(hit), one per class (one for binary: P(positive)).
    Each map is its knots, (score, probability) pairs, linearly interpolated between them and
    flat beyond them."""

    task: Task
    knots: list[tuple[list[float], list[float]]]
    rows: int  # validation rows it was fitted on
    method: Method = field(default=Method.cbpe, init=False)

    @classmethod
    def fit(cls, task: Task, y: np.ndarray, scores: np.ndarray) -> Calibration:
        """`y`: class indexes; `scores`: P(positive) (n,) or class probabilities (n, k)."""
        if scores.ndim == 1:
            return cls(Task(task), [_isotonic(scores, y == 1)], len(y))
        return cls(
            Task(task), [_isotonic(scores[:, c], y == c) for c in range(scores.shape[1])], len(y)
        )

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, shaped as `scores` (multiclass rows sum to 1)."""
        if scores.ndim == 1:
            return np.interp(scores, *self.knots[0])
        out = np.column_stack([np.interp(scores[:, c], *k) for c, k in enumerate(self.knots)])
        total = out.sum(axis=1, keepdims=True)
        flat = np.full_like(out, 1.0 / out.shape[1])  # no class looks possible: say so evenly
        return np.divide(out, total, out=flat, where=total > 0)

    def estimate(self, scores: np.ndarray) -> Estimate:
        p = self.apply(scores)
        if scores.ndim == 1:
            predicted = (scores >= THRESHOLD).astype(np.int64)
            p = np.column_stack([1.0 - p, p])
            ranking = np.column_stack([1.0 - scores, scores])
        else:
            predicted, ranking = scores.argmax(axis=1), scores
        k = p.shape[1]
        # expected confusion: row i adds its probability of each true class to its predicted column
        confusion = np.stack([np.bincount(predicted, p[:, a], minlength=k) for a in range(k)])
        metrics = _from_confusion(confusion, binary=scores.ndim == 1)
        aucs = [_expected_auc(ranking[:, c], p[:, c]) for c in range(1 if k == 2 else 0, k)]
        aucs = [a for a in aucs if not math.isnan(a)]
        metrics["roc_auc"] = float(np.mean(aucs)) if aucs else math.nan
        metrics = {m: metrics[m] for m in ESTIMATED[self.task]}
        return Estimate(self.method, len(scores), metrics, confusion.tolist())

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "task": self.task.value,
            "rows": self.rows,
            "knots": [[list(x), list(y)] for x, y in self.knots],
        }


@dataclass(frozen=True)
class ErrorModel:
    """DLE: LightGBM models of a row's absolute and squared error from its features and its
    prediction, saved as LightGBM's own text format."""

    absolute: str
    squared: str
    rows: int  # validation rows it was fitted on
    method: Method = field(default=Method.dle, init=False)

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray, prediction: np.ndarray) -> ErrorModel:
        x = _inputs(features, prediction)
        error = y - prediction
        return cls(_boost(x, np.abs(error)), _boost(x, error**2), len(y))

    def estimate(self, features: np.ndarray, prediction: np.ndarray) -> Estimate:
        import lightgbm

        x = _inputs(features, prediction)
        absolute = lightgbm.Booster(model_str=self.absolute).predict(x)
        squared = lightgbm.Booster(model_str=self.squared).predict(x)
        metrics = {
            "mae": float(np.mean(np.maximum(absolute, 0.0))),
            "rmse": float(math.sqrt(np.mean(np.maximum(squared, 0.0)))),
        }
        return Estimate(self.method, len(prediction), metrics)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "task": Task.regression.value,
            "rows": self.rows,
            "absolute": self.absolute,
            "squared": self.squared,
        }


Estimator = Calibration | ErrorModel


def fit(task: Task, y: np.ndarray, raw: np.ndarray, features: np.ndarray) -> Estimator | None:
    """The version's estimator from its validation split: `y` class indexes (-1: a class the
    head never saw, left out) or values, `raw` the model's outputs, `features` its inputs.
    None when the split is too small to fit one on."""
    if Task(task) is Task.regression:
        keep = np.isfinite(y)
        if np.count_nonzero(keep) < MIN_ROWS:
            return None
        return ErrorModel.fit(features[keep], y[keep], raw[keep].astype(np.float64))
    keep = y >= 0
    if np.count_nonzero(keep) < MIN_ROWS:
        return None
    return Calibration.fit(task, y[keep], np.asarray(raw, np.float64)[keep])


def from_json(data: Any, where: str) -> Estimator:
    """A stored estimator (its JSON) typed; ValueError naming `where` when it is not one."""
    try:
        method = Method(data["method"])
        if method is Method.cbpe:
            knots = [(list(map(float, x)), list(map(float, y))) for x, y in data["knots"]]
            return Calibration(Task(data["task"]), knots, int(data["rows"]))
        return ErrorModel(str(data["absolute"]), str(data["squared"]), int(data["rows"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where} is not a quality estimator ({e!r})") from None


# ----------------------------------------------------------------------------- building blocks


def _isotonic(score: np.ndarray, hit: np.ndarray) -> tuple[list[float], list[float]]:
    """The non-decreasing fit of `hit` on `score` (pool adjacent violators), as knots: each
    pooled block's first and last score with the block's hit rate."""
    xs, group = np.unique(score, return_inverse=True)
    weight = np.bincount(group).astype(np.float64)
    total = np.bincount(group, weights=hit.astype(np.float64))
    blocks: list[list[float]] = []  # [hits, weight, first x index, last x index]
    for i in range(len(xs)):
        blocks.append([total[i], weight[i], i, i])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            hits, w, _, last = blocks.pop()
            blocks[-1][0] += hits
            blocks[-1][1] += w
            blocks[-1][3] = last
    x, y = [], []
    for hits, w, first, last in blocks:
        for j in dict.fromkeys((int(first), int(last))):
            x.append(float(xs[j]))
            y.append(hits / w)
    return x, y


def _from_confusion(confusion: np.ndarray, binary: bool) -> dict[str, float]:
    """accuracy, precision, recall, F1 of expected counts: the positive class's for binary,
    macro averages over the classes expected or predicted for multiclass (as the quality
    metrics average)."""
    n = confusion.sum()
    tp = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = predicted + actual
    f1 = np.divide(2 * tp, both, out=np.zeros_like(tp), where=both > 0)
    pick = [1] if binary else np.flatnonzero(both > 0)
    return {
        "accuracy": float(tp.sum() / n) if n else math.nan,
        "precision": float(np.mean(precision[pick])),
        "recall": float(np.mean(recall[pick])),
        "f1": float(np.mean(f1[pick])),
    }


def _expected_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """The ROC AUC expected when row i is positive with probability positive[i]: each pair
    (i, j) counts P(i positive) P(j negative) when i scores higher, half of it on a tie."""
    _, group = np.unique(score, return_inverse=True)
    pos = np.bincount(group, weights=positive)
    neg = np.bincount(group, weights=1.0 - positive)
    below = np.cumsum(neg) - neg
    pairs = pos.sum() * neg.sum() - np.dot(positive, 1.0 - positive)  # a row is not its own pair
    if pairs <= 0:
        return math.nan
    ties = np.dot(pos, neg) - np.dot(positive, 1.0 - positive)
    return float((np.dot(pos, below) + 0.5 * ties) / pairs)


def _inputs(features: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return np.column_stack([features.astype(np.float64), prediction.astype(np.float64)])


def _boost(x: np.ndarray, target: np.ndarray) -> str:
    import lightgbm

    params = {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": max(5, len(x) // 50),
        "num_threads": 1,  # beside the registering job's other work; ~0.1 s at 10k rows
        "verbose": -1,
        "seed": 0,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(x, target), num_boost_round=100)
    return booster.model_to_string()

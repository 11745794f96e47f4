"""Target encoding: the one rule that turns a target's values into the numbers losses and
metrics take, and back. Training (the head), monitoring (reference and feedback labels) and
retraining (the holdout) all encode here; they differ only in what a label that is none of
the classes becomes, and each names that choice (`Unknown`).

Classification: a label's index in `classes` (a head's labels, in output order). Regression:
the value as a float.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

import numpy as np

from keel.config.schema import Task

NAN = float("nan")


class Unknown(Enum):
    """What encoding makes of a label that is none of the classes."""

    nan = "nan"  # monitoring: a label the model never saw counts as no label
    minus_one = "minus_one"  # training: index -1, which the loss and the metrics refuse
    error = "error"  # retraining: its holdout labels came from the classes, so one is a bug


def class_index(values: Iterable, classes: list) -> np.ndarray:
    """Each value's index in `classes` as float64; NaN for a value that is none of them.

    A value matches a class by value, wherever it was read from (a typed column, a parquet
    file, JSON feedback): as text (`"Adelie"`; `"2"` and `2`) or as a number (`2.0` and `2`).
    Bools are no numbers: `true` is not class 1. Pass plain Python values (`tolist()`); numpy
    scalars are taken too.
    """
    by_text: dict[str, int] = {}
    by_number: dict[float, int] = {}
    for i, c in enumerate(classes):
        by_text.setdefault(str(c), i)
        if (number := as_float(c)) is not None:
            by_number.setdefault(number, i)
    out = []
    for v in values:
        i = by_text.get(str(v))
        if i is None and (number := as_float(v)) is not None:
            i = by_number.get(number)
        out.append(NAN if i is None else float(i))
    return np.asarray(out, np.float64)


def as_float(value: Any) -> float | None:
    """A real number as a float; None for bools, text and numbers too large for a float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def encode(values: Sequence, task: Task | str, classes: list, unknown: Unknown) -> np.ndarray:
    """Target values (plain Python values) as float64: the value for regression, the class
    index for classification, with an unknown label made what `unknown` says."""
    if Task(task) is Task.regression:
        return np.asarray(values, np.float64)
    index = class_index(values, classes)
    missing = np.isnan(index)
    if unknown is Unknown.error and missing.any():
        unseen = sorted({str(v) for v, m in zip(values, missing, strict=True) if m})
        raise ValueError(f"labels {unseen} are none of the classes {classes}")
    if unknown is Unknown.minus_one:
        return np.where(missing, -1.0, index)
    return index


def encode_one(value: Any, task: Task | str, classes: list) -> float | None:
    """One label as read from anywhere (a feedback record): the finite value for regression,
    the class index for classification; None when it is neither."""
    if Task(task) is Task.regression:
        number = as_float(value)
        return number if number is not None and np.isfinite(number) else None
    index = class_index([value], classes)[0]
    return None if np.isnan(index) else float(index)


def decode(y: np.ndarray, task: Task | str, classes: list) -> list:
    """Encoded targets back to values: the class label of each index, or the value."""
    return y.tolist() if Task(task) is Task.regression else [classes[int(i)] for i in y]

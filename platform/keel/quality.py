"""Which metrics keel computes, which way each improves, and the one that ranks models per task.

Facts that training (evaluation), the registry (the SLO floor, the model card), data inference
(`keel init`'s experiment) and monitoring (retraining's comparison) all need: they sit below
every one of them, so none imports another for them.
"""

from __future__ import annotations

import math

from keel.config.schema import Task

HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "roc_auc", "r2"}
LOWER_IS_BETTER = {"log_loss", "calibration_error", "rmse", "mae", "mape"}
# The metric that ranks models (and the one `by_slice` reports a gap for).
PRIMARY = {
    Task.binary_classification: "roc_auc",
    Task.multiclass_classification: "f1",
    Task.regression: "r2",
}


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """True when `a` improves on `b` in the metric's direction, strictly and by >= `margin`.

    A tie never counts as better. A NaN `a` never beats anything; a non-NaN `a` beats a NaN `b`
    (any score beats a missing one).
    """
    if metric in HIGHER_IS_BETTER:
        sign = 1.0
    elif metric in LOWER_IS_BETTER:
        sign = -1.0
    else:
        known = sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER)
        raise ValueError(f"unknown metric {metric!r}; expected one of {known}")
    if not margin >= 0.0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    a, b = float(a), float(b)
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    gain = sign * (a - b)
    return bool(gain > 0.0 and gain >= margin)

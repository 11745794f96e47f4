"""The verdict's three checks: drift, quality and SLO, each pass, fail or skipped with numbers.

A check is skipped, not passed, when there is too little data to judge: a verdict never
claims health it could not measure. The verdict fails when any check fails, and asks for
retraining when a failed check is one of `monitor.retrain_on`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa

from keel.config.schema import Check, MonitorConfig, SloConfig, Task
from keel.registry import check_floor
from keel.training.metrics import evaluate, per_class_recall


class Status(StrEnum):
    """The outcome of one check, or of the verdict."""

    passed = "pass"
    failed = "fail"
    skipped = "skipped"  # too little data to judge: never counted as a pass or a fail


PASS, FAIL, SKIPPED = Status.passed, Status.failed, Status.skipped
INVALID_STATUS = (400, 413, 422)  # the request itself was bad: malformed, too large, invalid


def skipped(reason: str, **numbers: Any) -> dict[str, Any]:
    return {"status": SKIPPED, "reason": reason, **numbers}


def _judged(failures: list[str], **numbers: Any) -> dict[str, Any]:
    return {"status": FAIL if failures else PASS, "failures": failures, **numbers}


def drift(result: Any, max_share: float) -> dict[str, Any]:
    """Fails when the share of drifted input columns exceeds slo.max_drift_share."""
    drifted = sorted(c for c, r in result.columns.items() if r["drifted"])
    failures = []
    if result.share > max_share:
        failures.append(
            f"{len(drifted)} of {len(result.columns)} columns drifted ({result.share:.0%}), "
            f"above slo.max_drift_share {max_share:.0%}: {', '.join(drifted)}"
        )
    return _judged(
        failures,
        drifted_columns=drifted,
        share=result.share,
        max_share=max_share,
        columns=result.columns,
        prediction=result.prediction,
    )


def quality(
    task: Task,
    y: np.ndarray,
    prediction: np.ndarray,
    floor: dict[str, float],
    min_rows: int,
    classes: list = (),
) -> dict[str, Any]:
    """The task's metrics on labeled predictions against slo.quality_floor.

    `y` holds class indexes (classification) or values. `prediction` is the logged one, or
    for multiclass the (n, k) class probabilities in the order of `classes`, with a NaN row
    for a prediction logged without them (before the log kept them): such rows are counted
    as `unscored` and left out. Multiclass also reports `per_class_recall` by class label,
    NaN for a class without labeled rows.
    """
    numbers: dict[str, Any] = {}
    multiclass = Task(task) is Task.multiclass_classification
    if multiclass:
        prediction = np.asarray(prediction, np.float64)
        if prediction.ndim != 2:
            raise ValueError(
                f"multiclass quality needs (n, k) probabilities, got {prediction.shape}"
            )
        scored = np.isfinite(prediction).all(axis=1)
        numbers["unscored"] = int(np.count_nonzero(~scored))
        y, prediction = np.asarray(y)[scored], prediction[scored]
    if len(y) < min_rows:
        more = f" (and {numbers['unscored']} unscored)" if numbers.get("unscored") else ""
        return skipped(
            f"{len(y)} labeled predictions{more}, fewer than monitor.min_rows {min_rows}",
            **numbers,
        )
    metrics = evaluate(task, y, prediction)
    if multiclass:
        recall = per_class_recall(y, prediction)
        numbers["per_class_recall"] = dict(zip(map(str, classes), recall, strict=True))
    failures = check_floor({"test": metrics}, floor)
    return _judged(failures, labeled=len(y), metrics=metrics, floor=floor, **numbers)


def slo(requests: pa.Table, limits: SloConfig) -> dict[str, Any]:
    """Latency p99 of answered requests, error rate (5xx) and invalid-request rate (4xx)."""
    n = requests.num_rows
    if n == 0:
        return skipped("no requests logged in the window")
    status = requests["status"].to_numpy(zero_copy_only=False)
    answered = status == 200
    latency = requests["latency_ms"].to_numpy(zero_copy_only=False)[answered]
    p99 = float(np.percentile(latency, 99)) if answered.any() else None
    errors = float(np.mean(status >= 500))
    invalid = float(np.mean(np.isin(status, INVALID_STATUS)))
    failures = []
    if p99 is not None and p99 > limits.latency_p99_ms:
        failures.append(
            f"latency p99 {p99:.1f} ms above slo.latency_p99_ms {limits.latency_p99_ms}"
        )
    if errors > limits.max_error_rate:
        failures.append(f"error rate {errors:.2%} above slo.max_error_rate {limits.max_error_rate}")
    if invalid > limits.max_invalid_fraction:
        failures.append(
            f"invalid-request rate {invalid:.2%} above slo.max_invalid_fraction "
            f"{limits.max_invalid_fraction}"
        )
    return _judged(
        failures, requests=n, latency_p99_ms=p99, error_rate=errors, invalid_rate=invalid
    )


@dataclass
class Judgement:
    """What the checks add up to (verdict.json's status, failed, retrain, reasons, checks)."""

    status: Status
    failed: list[Check]  # the failed checks, in verdict order
    retrain: bool  # a failed check is one of monitor.retrain_on
    reasons: list[str]  # "check: why", one per failure
    checks: dict[str, dict[str, Any]]  # each check's status, failures or reason, and numbers


def verdict(checks: dict[str, dict], monitor: MonitorConfig) -> Judgement:
    failed = [Check(name) for name, c in checks.items() if c["status"] == FAIL]
    return Judgement(
        status=FAIL if failed else PASS,
        failed=failed,
        retrain=any(name in monitor.retrain_on for name in failed),
        reasons=[f"{n.value}: {why}" for n in failed for why in checks[n.value]["failures"]],
        checks=checks,
    )

"""The verdict's checks: drift, quality, estimated quality, attribution drift and SLO, each
pass, fail or skipped with numbers.

A check is skipped, not passed, when there is too little data to judge: a verdict never
claims health it could not measure. The verdict fails when any check fails, and asks for
retraining when a failed check is one of `monitor.retrain_on`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa

from keel import prediction_log as plog
from keel.config.schema import Check, MonitorConfig, SloConfig, Task
from keel.quality import LOWER_IS_BETTER
from keel.registry import check_floor
from keel.training.estimator import BLIND_TO, Estimate
from keel.training.metrics import evaluate, per_class_recall

from .drift import ColumnDrift


class Status(StrEnum):
    """The outcome of one check, or of the verdict."""

    passed = "pass"
    failed = "fail"
    skipped = "skipped"  # too little data to judge: never counted as a pass or a fail


PASS, FAIL, SKIPPED = Status.passed, Status.failed, Status.skipped
INVALID_STATUS = (400, 413, 422)  # the request itself was bad: malformed, too large, invalid
# Realized and estimated quality agree within this (a share; a fraction of an error metric)
# or two standard errors of the labels, whichever is larger: beyond it, the verdict says why.
AGREE = 0.05
# what the comparison reads: metrics of every labeled row (precision and recall count a subset,
# the predicted or the actual positives, whose noise the label count alone does not bound)
COMPARED = ("accuracy", "roc_auc", "mae", "rmse")


# A figure with this metadata is written whenever it is known (None: left out), skipped or
# not; a check's other figures are written only when it was judged.
EXTRA = {"extra": True}


@dataclass(frozen=True)
class Outcome:
    """One check's outcome: its status, and why (failures when judged, reason when skipped).
    Each kind adds its figures; `to_json` writes verdict.json's shape for a check."""

    status: Status
    failures: list[str] = field(default_factory=list)  # one line per bound broken
    reason: str | None = None  # why it was skipped

    @classmethod
    def judged(cls, failures: list[str], **numbers: Any) -> Any:
        return cls(status=FAIL if failures else PASS, failures=failures, **numbers)

    @classmethod
    def skipped(cls, reason: str, **numbers: Any) -> Any:
        """Too little data to judge: never counted as a pass or a fail."""
        return cls(status=SKIPPED, reason=reason, **numbers)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value}
        if self.status is SKIPPED:
            out["reason"] = self.reason
        else:
            out["failures"] = list(self.failures)
        for f in fields(self)[3:]:
            value = getattr(self, f.name)
            if "extra" in f.metadata:
                if value is not None:
                    out[f.name] = value
            elif self.status is not SKIPPED:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)} - {"status", "failures", "reason"}
        return cls(
            status=Status(data["status"]),
            failures=list(data.get("failures", [])),
            reason=data.get("reason"),
            **{k: v for k, v in data.items() if k in known},
        )


@dataclass(frozen=True)
class DriftCheck(Outcome):
    """Drift of the window's inputs (and prediction) against the version's reference."""

    drifted_columns: list[str] = field(default_factory=list)  # input columns that drifted
    share: float | None = None  # drifted / compared input columns
    max_share: float | None = None  # slo.max_drift_share
    columns: dict[str, ColumnDrift] = field(default_factory=dict)  # each compared input's test
    prediction: ColumnDrift | None = None  # the prediction's (None: absent)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if "columns" in out:
            out["columns"] = {c: r.to_json() for c, r in self.columns.items()}
            out["prediction"] = self.prediction and self.prediction.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriftCheck:
        read = super().from_json(data)
        prediction = data.get("prediction")
        return replace(
            read,
            columns={c: ColumnDrift.from_json(r) for c, r in data.get("columns", {}).items()},
            prediction=None if prediction is None else ColumnDrift.from_json(prediction),
        )


@dataclass(frozen=True)
class QualityCheck(Outcome):
    """The task's metrics on the window's labeled predictions against the floor."""

    labeled: int | None = None  # labeled predictions scored
    metrics: dict[str, float] = field(default_factory=dict)  # the task's metrics on them
    floor: dict[str, float] = field(default_factory=dict)  # slo.quality_floor
    # multiclass: labeled rows logged without class probabilities; recall by class label
    unscored: int | None = field(default=None, metadata=EXTRA)
    per_class_recall: dict[str, float] | None = field(default=None, metadata=EXTRA)
    # how the window's feedback joined its predictions; why labeled rows got no report
    feedback: dict[str, int] | None = field(default=None, metadata=EXTRA)
    report_skipped: str | None = field(default=None, metadata=EXTRA)


@dataclass(frozen=True)
class EstimateCheck(Outcome):
    """The window's quality estimated without labels against slo.estimated_quality_floor,
    beside the realized quality when feedback let the quality check judge it."""

    method: str | None = None  # cbpe (classification) or dle (regression)
    rows: int | None = None  # predictions the estimate is computed from
    metrics: dict[str, float] = field(default_factory=dict)  # the estimated metrics
    floor: dict[str, float] = field(default_factory=dict)  # slo.estimated_quality_floor
    # classification: the expected confusion matrix (row: true class, column: predicted)
    confusion: list[list[float]] | None = field(default=None, metadata=EXTRA)
    realized: dict[str, float] | None = field(default=None, metadata=EXTRA)  # from feedback
    # realized and estimated disagree beyond sampling noise: what that says
    disagreement: str | None = field(default=None, metadata=EXTRA)
    blind_to: str = field(default=BLIND_TO, metadata=EXTRA)  # what estimation cannot see

    def headline(self) -> str:
        """One figure for a summary line: the first of ROC AUC, F1, MAE estimated, beside its
        realized value when known."""
        if self.status is SKIPPED:
            return f"not estimated: {self.reason}"
        name = next(m for m in ("roc_auc", "f1", "mae") if m in self.metrics)
        real = (self.realized or {}).get(name)
        beside = "" if real is None else f", {real:.3f} realized"
        return f"{name} {self.metrics[name]:.3f} estimated without labels{beside}"


@dataclass(frozen=True)
class AttributionCheck(Outcome):
    """Attribution drift: each input column's share of the explanation (its mean |attribution|
    over all columns') on a sample of the window against the same on the training reference.
    Data drift says the inputs moved; this says which moves changed why the model answers."""

    rows: int | None = None  # window rows explained
    explained: str | None = None  # what the attributions explain (keel.models.explain)
    shares: dict[str, list[float]] = field(default_factory=dict)  # column: [reference, window]
    moved: list[str] = field(default_factory=list)  # columns whose share moved beyond the bound
    max_shift: float | None = None  # slo.max_attribution_shift

    def headline(self) -> str:
        """The columns whose share moved most, for a summary line."""
        if self.status is SKIPPED:
            return f"not compared: {self.reason}"
        top = sorted(self.shares.items(), key=lambda kv: -abs(kv[1][1] - kv[1][0]))[:3]
        shown = ", ".join(f"{c} {ref:.0%} -> {now:.0%}" for c, (ref, now) in top)
        return f"share of the explanation: {shown}"


@dataclass(frozen=True)
class SloCheck(Outcome):
    """Latency, errors and invalid requests of the window's request log."""

    requests: int | None = None  # requests logged in the window
    latency_p99_ms: float | None = None  # of answered predict requests (None: none)
    error_rate: float | None = None  # 5xx share
    invalid_rate: float | None = None  # 400, 413 and 422 share
    # of answered explain requests, against their own budget (None: none in the window)
    explain_latency_p99_ms: float | None = field(default=None, metadata=EXTRA)


KINDS: dict[Check, type[Outcome]] = {
    Check.drift: DriftCheck,
    Check.quality: QualityCheck,
    Check.estimate: EstimateCheck,
    Check.attribution: AttributionCheck,
    Check.slo: SloCheck,
}


def drift(result: Any, max_share: float) -> DriftCheck:
    """Fails when the share of drifted input columns exceeds slo.max_drift_share."""
    drifted = sorted(c for c, r in result.columns.items() if r.drifted)
    failures = []
    if result.share > max_share:
        failures.append(
            f"{len(drifted)} of {len(result.columns)} columns drifted ({result.share:.0%}), "
            f"above slo.max_drift_share {max_share:.0%}: {', '.join(drifted)}"
        )
    return DriftCheck.judged(
        failures,
        drifted_columns=drifted,
        share=result.share,
        max_share=max_share,
        columns=result.columns,
        prediction=result.prediction,
    )


def attribution(
    reference: dict[str, float],
    window: dict[str, float],
    rows: int,
    explained: str,
    max_shift: float,
) -> AttributionCheck:
    """Each column's share of the mean |attribution| on the window's `rows` explained rows
    against the reference's (both {column: mean |attribution|}); fails naming the columns
    whose share moved more than slo.max_attribution_shift."""
    before, after = _shares(reference), _shares(window)
    shares = {c: [before.get(c, 0.0), after.get(c, 0.0)] for c in {**before, **after}}
    shares = dict(sorted(shares.items(), key=lambda kv: -max(kv[1])))
    moved = [c for c, (ref, now) in shares.items() if abs(now - ref) > max_shift]
    failures = []
    if moved:
        shown = ", ".join(f"{c} {shares[c][0]:.0%} -> {shares[c][1]:.0%}" for c in moved)
        failures.append(
            f"{len(moved)} columns' share of the explanation moved more than "
            f"slo.max_attribution_shift {max_shift:.0%}: {shown}"
        )
    return AttributionCheck.judged(
        failures,
        rows=rows,
        explained=explained,
        shares=shares,
        moved=moved,
        max_shift=max_shift,
    )


def _shares(importance: dict[str, float]) -> dict[str, float]:
    total = sum(importance.values())
    return {c: (v / total if total > 0 else 0.0) for c, v in importance.items()}


def quality(
    task: Task,
    y: np.ndarray,
    prediction: np.ndarray,
    floor: dict[str, float],
    min_rows: int,
    classes: list = (),
) -> QualityCheck:
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
        return QualityCheck.skipped(
            f"{len(y)} labeled predictions{more}, fewer than monitor.min_rows {min_rows}",
            **numbers,
        )
    metrics = evaluate(task, y, prediction)
    if multiclass:
        recall = per_class_recall(y, prediction)
        numbers["per_class_recall"] = dict(zip(map(str, classes), recall, strict=True))
    failures = check_floor({"test": metrics}, floor)
    return QualityCheck.judged(failures, labeled=len(y), metrics=metrics, floor=floor, **numbers)


def estimate(
    estimated: Estimate, floor: dict[str, float], min_rows: int, realized: QualityCheck
) -> EstimateCheck:
    """Estimated quality against slo.estimated_quality_floor, beside the realized metrics of
    the same names when the quality check judged the window's feedback."""
    numbers: dict[str, Any] = {}
    if realized.status is not SKIPPED:
        same = {k: realized.metrics[k] for k in estimated.metrics if k in realized.metrics}
        numbers["realized"] = same
        numbers["disagreement"] = disagreement(estimated.metrics, same, realized.labeled or 0)
    if estimated.rows < min_rows:
        return EstimateCheck.skipped(
            f"{estimated.rows} predictions to estimate from, fewer than monitor.min_rows "
            f"{min_rows}",
            **numbers,
        )
    failures = check_floor(
        {"test": estimated.metrics}, floor, setting="slo.estimated_quality_floor"
    )
    return EstimateCheck.judged(
        failures,
        method=estimated.method.value,
        rows=estimated.rows,
        metrics=estimated.metrics,
        floor=floor,
        confusion=estimated.confusion,
        **numbers,
    )


def disagreement(
    estimated: dict[str, float], realized: dict[str, float], labels: int
) -> str | None:
    """A sentence when realized and estimated quality differ by more than sampling noise on
    `labels` rows allows: accuracy or ROC AUC by max(0.05, 2/sqrt(labels)), an error (mae,
    rmse) by that fraction of the realized one. None when they agree."""
    allowed = max(AGREE, 2.0 / np.sqrt(max(labels, 1)))
    apart = []
    for name, value in estimated.items():
        real = realized.get(name) if name in COMPARED else None
        if real is None or not np.isfinite(real) or not np.isfinite(value):
            continue
        gap = abs(real - value) / (abs(real) if name in LOWER_IS_BETTER else 1.0)
        if gap > allowed:
            apart.append(f"{name} realized {real:.4g}, estimated {value:.4g}")
    if not apart:
        return None
    return (
        f"on {labels:,} labels, {'; '.join(apart)}: labels follow the inputs differently than "
        "in training (concept shift, which estimation cannot see), or the feedback is a biased "
        "subset of the window"
    )


def slo(requests: pa.Table, limits: SloConfig) -> SloCheck:
    """Latency p99 of answered predict requests and of answered explain requests, each against
    its own budget; error rate (5xx) and invalid-request rate (4xx) of all of them."""
    n = requests.num_rows
    if n == 0:
        return SloCheck.skipped("no requests logged in the window")
    status = requests["status"].to_numpy(zero_copy_only=False)
    latency = requests["latency_ms"].to_numpy(zero_copy_only=False)
    # requests logged before explanations existed have no operation: all predicts
    explained = np.zeros(n, bool)
    if "operation" in requests.column_names:
        operation = requests["operation"].to_numpy(zero_copy_only=False)
        explained = operation == plog.Operation.explain.value
    p99, explain_p99 = (_p99(latency[(status == 200) & (explained == e)]) for e in (False, True))
    errors = float(np.mean(status >= 500))
    invalid = float(np.mean(np.isin(status, INVALID_STATUS)))
    failures = []
    if p99 is not None and p99 > limits.latency_p99_ms:
        failures.append(
            f"latency p99 {p99:.1f} ms above slo.latency_p99_ms {limits.latency_p99_ms}"
        )
    if explain_p99 is not None and explain_p99 > limits.explain_latency_p99_ms:
        failures.append(
            f"explain latency p99 {explain_p99:.1f} ms above slo.explain_latency_p99_ms "
            f"{limits.explain_latency_p99_ms}"
        )
    if errors > limits.max_error_rate:
        failures.append(f"error rate {errors:.2%} above slo.max_error_rate {limits.max_error_rate}")
    if invalid > limits.max_invalid_fraction:
        failures.append(
            f"invalid-request rate {invalid:.2%} above slo.max_invalid_fraction "
            f"{limits.max_invalid_fraction}"
        )
    return SloCheck.judged(
        failures,
        requests=n,
        latency_p99_ms=p99,
        error_rate=errors,
        invalid_rate=invalid,
        explain_latency_p99_ms=explain_p99,
    )


def _p99(latency: np.ndarray) -> float | None:
    return float(np.percentile(latency, 99)) if len(latency) else None


@dataclass
class Judgement:
    """What the checks add up to (verdict.json's status, failed, retrain, reasons, checks)."""

    status: Status
    failed: list[Check]  # the failed checks, in verdict order
    retrain: bool  # a failed check is one of monitor.retrain_on
    reasons: list[str]  # "check: why", one per failure
    checks: dict[Check, Outcome]  # each check's outcome, in verdict order

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "failed": [c.value for c in self.failed],
            "retrain": self.retrain,
            "reasons": list(self.reasons),
            "checks": {c.value: outcome.to_json() for c, outcome in self.checks.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Judgement:
        """verdict.json's part; a check of an unknown name keeps only its status and why."""
        return cls(
            status=Status(data["status"]),
            failed=[Check(c) for c in data["failed"]],
            retrain=bool(data["retrain"]),
            reasons=list(data["reasons"]),
            checks={
                Check(name): KINDS.get(Check(name), Outcome).from_json(outcome)
                for name, outcome in dict(data["checks"]).items()
            },
        )


def verdict(outcomes: dict[Check, Outcome], monitor: MonitorConfig) -> Judgement:
    failed = [Check(name) for name, c in outcomes.items() if c.status is FAIL]
    return Judgement(
        status=FAIL if failed else PASS,
        failed=failed,
        retrain=any(name in monitor.retrain_on for name in failed),
        reasons=[f"{n.value}: {why}" for n in failed for why in outcomes[n].failures],
        checks={Check(name): c for name, c in outcomes.items()},
    )

"""The verdict's checks (drift, quality, estimate, attribution, SLO) on hand-made inputs, the
verdict built from them, and finding the latest verdict a monitor run wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keel import prediction_log as plog
from keel import storage
from keel.config.schema import MonitorConfig, SloConfig, Task
from keel.errors import KeelError
from keel.monitoring import checks
from keel.monitoring.drift import ColumnDrift, DriftResult
from keel.monitoring.monitor import VERDICT, latest_verdict
from keel.training.estimator import Estimate, Method

TS = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def requests_table(rows: list[tuple[int, float]], operation: str | None = None) -> pa.Table:
    """(status, latency_ms) rows as the request log stores them; no operation: as logged before
    explanations existed."""
    return pa.Table.from_pylist(
        [
            {
                "ts": TS,
                "model": "churn",
                "status": status,
                "reason": None if status == 200 else "refused",
                "rows": 1,
                "latency_ms": latency,
                "operation": operation,
            }
            for status, latency in rows
        ],
        schema=plog.REQUEST_SCHEMA,
    )


ANSWERED = [(200, float(ms)) for ms in range(1, 101)]  # p99 99.01 ms
ERRORS = [(500, 9_000.0), (503, 9_000.0)]
INVALID = [(400, 9_000.0), (413, 9_000.0), (422, 9_000.0)]
NOT_COUNTED = [(401, 9_000.0), (404, 9_000.0)]  # neither server errors nor invalid requests
MIXED = ANSWERED + ERRORS + INVALID + NOT_COUNTED  # 107 requests


def limits(**kw) -> SloConfig:
    base = {"latency_p99_ms": 100.0, "max_error_rate": 0.05, "max_invalid_fraction": 0.05}
    return SloConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- slo


def test_slo_numbers_count_only_what_each_rate_means():
    result = checks.slo(requests_table(MIXED), limits())
    assert result.requests == 107
    # the refused requests' 9 s latencies are not in the p99
    assert result.latency_p99_ms == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert result.error_rate == pytest.approx(2 / 107)
    assert result.invalid_rate == pytest.approx(3 / 107)
    assert result.status == checks.PASS
    assert result.failures == []


@pytest.mark.parametrize(
    ("key", "limit"),
    [
        ("latency_p99_ms", 99.0),
        ("max_error_rate", 0.01),  # 2/107 = 1.9%
        ("max_invalid_fraction", 0.02),  # 3/107 = 2.8%
    ],
)
def test_slo_each_breach_fails_naming_its_key(key, limit):
    result = checks.slo(requests_table(MIXED), limits(**{key: limit}))
    assert result.status == checks.FAIL
    assert len(result.failures) == 1
    assert f"slo.{key}" in result.failures[0]


def test_slo_all_breaches_together():
    tight = limits(latency_p99_ms=50.0, max_error_rate=0.0, max_invalid_fraction=0.0)
    failures = checks.slo(requests_table(MIXED), tight).failures
    assert [f.split(" above ")[1].split()[0] for f in failures] == [
        "slo.latency_p99_ms",
        "slo.max_error_rate",
        "slo.max_invalid_fraction",
    ]


def test_slo_explain_latency_has_its_own_budget_and_stays_out_of_predicts():
    predicts = requests_table(ANSWERED, "predict")
    explains = requests_table([(200, 800.0)] * 50 + [(200, 1_500.0)] * 2 + ERRORS, "explain")
    both = pa.concat_tables([predicts, explains])
    result = checks.slo(both, limits(max_error_rate=0.5))
    assert result.latency_p99_ms == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert result.explain_latency_p99_ms == pytest.approx(1_500.0)
    assert result.error_rate == pytest.approx(2 / 154)  # errors count every operation
    (failure,) = result.failures
    assert "explain latency p99 1500.0 ms above slo.explain_latency_p99_ms 1000.0" in failure
    relaxed = checks.slo(both, limits(max_error_rate=0.5, explain_latency_p99_ms=2_000.0))
    assert relaxed.status is checks.PASS
    # a window without explain requests judges none and writes none
    alone = checks.slo(predicts, limits())
    assert alone.explain_latency_p99_ms is None and "explain_latency_p99_ms" not in alone.to_json()


def test_slo_401_and_404_are_neither_errors_nor_invalid():
    result = checks.slo(requests_table([(200, 1.0), *NOT_COUNTED]), limits())
    assert (result.error_rate, result.invalid_rate) == (0.0, 0.0)
    assert result.status == checks.PASS


def test_slo_without_answered_requests_has_no_p99():
    result = checks.slo(requests_table(ERRORS), limits(max_error_rate=1.0))
    assert result.latency_p99_ms is None
    assert result.error_rate == 1.0
    assert result.status == checks.PASS


def test_slo_without_requests_is_skipped():
    result = checks.slo(pa.table({}), limits())
    assert result.status == checks.SKIPPED
    assert "no requests" in result.reason


# ----------------------------------------------------------------------------- quality


def binary_data(n: int, good: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 2).astype(np.float64)
    proba = np.where(y == 1, 0.8, 0.2) if good else rng.random(n)
    return y, proba


def test_quality_with_fewer_labels_than_min_rows_is_skipped():
    y, p = binary_data(99, good=True)
    result = checks.quality(Task.binary_classification, y, p, {"roc_auc": 0.7}, min_rows=100)
    assert result.status == checks.SKIPPED
    assert "99" in result.reason and "monitor.min_rows" in result.reason


def test_quality_binary_above_the_floor_passes_at_exactly_min_rows():
    y, p = binary_data(100, good=True)
    result = checks.quality(Task.binary_classification, y, p, {"roc_auc": 0.7}, min_rows=100)
    assert result.status == checks.PASS
    assert result.labeled == 100
    assert result.metrics["roc_auc"] == pytest.approx(1.0)


def test_quality_binary_below_the_floor_fails_naming_the_floor():
    y, p = binary_data(400, good=False)
    result = checks.quality(Task.binary_classification, y, p, {"roc_auc": 0.9}, min_rows=100)
    assert result.status == checks.FAIL
    assert result.metrics["roc_auc"] < 0.9
    assert len(result.failures) == 1
    assert "slo.quality_floor.roc_auc" in result.failures[0]


def test_quality_regression_r2_floor():
    rng = np.random.default_rng(1)
    y = rng.normal(100.0, 10.0, 200)
    close, noise = y + rng.normal(0, 1, 200), rng.normal(100.0, 10.0, 200)
    ok = checks.quality(Task.regression, y, close, {"r2": 0.8}, min_rows=50)
    bad = checks.quality(Task.regression, y, noise, {"r2": 0.8}, min_rows=50)
    assert ok.status == checks.PASS and ok.metrics["r2"] > 0.9
    assert bad.status == checks.FAIL
    assert "slo.quality_floor.r2" in bad.failures[0]


MULTI = Task.multiclass_classification
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def multiclass_data(n: int, right: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class indexes and probabilities whose top class (0.7) is the label for a `right` share
    of the rows and the next class otherwise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    top = np.where(rng.random(n) < right, y, (y + 1) % 3)
    proba = np.full((n, 3), 0.15)
    proba[np.arange(n), top] = 0.7
    return y.astype(np.float64), proba


def test_quality_multiclass_above_the_floor_passes_with_every_number():
    y, proba = multiclass_data(300, right=0.9)
    result = checks.quality(MULTI, y, proba, {"f1": 0.6}, min_rows=100, classes=SPECIES)
    assert result.status == checks.PASS and result.failures == []
    assert result.labeled == 300 and result.unscored == 0
    metrics = result.metrics
    assert {"accuracy", "f1", "log_loss", "recall"} <= set(metrics)
    assert metrics["accuracy"] == pytest.approx(np.mean(proba.argmax(1) == y))
    assert metrics["f1"] > 0.8
    assert metrics["log_loss"] == pytest.approx(
        -np.mean(np.log(proba[np.arange(300), y.astype(int)]))
    )
    recall = result.per_class_recall
    assert list(recall) == SPECIES
    for i, name in enumerate(SPECIES):
        rows = y == i
        assert recall[name] == pytest.approx(np.mean(proba[rows].argmax(1) == i))
    assert json.loads(json.dumps(result.to_json())) == result.to_json()  # into verdict.json


def test_quality_multiclass_below_the_floor_fails_naming_f1():
    """A concept shift: the model still answers confidently, the labels moved."""
    y, proba = multiclass_data(300, right=0.3)
    result = checks.quality(MULTI, y, proba, {"f1": 0.6}, min_rows=100, classes=SPECIES)
    assert result.status == checks.FAIL
    assert result.metrics["f1"] < 0.6
    (failure,) = result.failures
    assert failure.startswith("f1 ") and "slo.quality_floor.f1" in failure


def test_quality_multiclass_leaves_out_rows_logged_without_probabilities():
    y, proba = multiclass_data(300, right=0.9)
    proba[:40] = np.nan  # logged before the log kept class probabilities
    result = checks.quality(MULTI, y, proba, {"f1": 0.6}, min_rows=100, classes=SPECIES)
    assert (result.labeled, result.unscored) == (260, 40)
    expected = checks.quality(MULTI, y[40:], proba[40:], {"f1": 0.6}, 100, SPECIES)
    assert result.metrics == expected.metrics


def test_quality_multiclass_skipped_when_too_few_rows_have_probabilities():
    y, proba = multiclass_data(300, right=0.9)
    proba[:250] = np.nan
    result = checks.quality(MULTI, y, proba, {"f1": 0.6}, min_rows=100, classes=SPECIES)
    assert result.status == checks.SKIPPED
    assert result.unscored == 250
    assert "50 labeled predictions (and 250 unscored)" in result.reason


def test_quality_multiclass_needs_the_probability_matrix():
    y, proba = multiclass_data(300, right=0.9)
    with pytest.raises(ValueError, match=r"\(n, k\) probabilities"):
        checks.quality(MULTI, y, proba.max(1), {"f1": 0.6}, min_rows=10, classes=SPECIES)


# ----------------------------------------------------------------------------- drift


def drift_result(drifted: dict[str, bool]) -> DriftResult:
    columns = {c: ColumnDrift("psi", 0.5 if d else 0.01, 0.1, d) for c, d in drifted.items()}
    share = sum(drifted.values()) / len(drifted)
    prediction = ColumnDrift("psi", 0.02, 0.1, False)
    return DriftResult(columns=columns, prediction=prediction, share=share)


def test_drift_above_max_share_fails_naming_the_columns():
    result = checks.drift(drift_result({"region": True, "age": True, "tenure": False}), 0.3)
    assert result.status == checks.FAIL
    assert result.drifted_columns == ["age", "region"]
    assert result.share == pytest.approx(2 / 3)
    (failure,) = result.failures
    assert "2 of 3 columns" in failure
    assert "slo.max_drift_share" in failure and "age, region" in failure
    assert result.prediction.drifted is False


def test_drift_at_or_below_max_share_passes():
    at_share = checks.drift(drift_result({"a": True, "b": False}), 0.5)
    assert at_share.status == checks.PASS and at_share.failures == []
    assert at_share.drifted_columns == ["a"]
    none = checks.drift(drift_result({"a": False, "b": False}), 0.0)
    assert none.status == checks.PASS and none.drifted_columns == []


def test_importing_the_report_module_does_not_import_evidently():
    code = (
        "import sys, keel.monitoring.report, keel.monitoring.checks, keel.monitoring.monitor\n"
        "print('evidently' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- verdict


def check(status: str, *failures: str) -> checks.Outcome:
    if status == checks.SKIPPED:
        return checks.Outcome.skipped("too little data")
    return checks.Outcome(checks.Status(status), list(failures))


def test_verdict_passes_when_nothing_failed_even_if_skipped():
    result = checks.verdict(
        {"drift": check("pass"), "quality": check("skipped"), "slo": check("pass")},
        MonitorConfig(),
    )
    assert (result.status, result.failed, result.retrain) == ("pass", [], False)
    assert result.reasons == []


def test_verdict_lists_failed_checks_in_order_with_reasons():
    result = checks.verdict(
        {
            "drift": check("fail", "3 of 9 columns drifted"),
            "quality": check("pass"),
            "slo": check("fail", "latency too high", "error rate too high"),
        },
        MonitorConfig(retrain_on=["drift", "quality", "slo"]),
    )
    assert result.status == "fail"
    assert result.failed == ["drift", "slo"]
    assert result.retrain is True
    assert result.reasons == [
        "drift: 3 of 9 columns drifted",
        "slo: latency too high",
        "slo: error rate too high",
    ]
    assert set(result.checks) == {"drift", "quality", "slo"}


@pytest.mark.parametrize(
    ("retrain_on", "expected"),
    [(["drift", "quality"], False), (["slo"], True), ([], False), (["quality", "slo"], True)],
)
def test_verdict_asks_for_retraining_only_for_failed_checks_in_retrain_on(retrain_on, expected):
    result = checks.verdict(
        {"drift": check("pass"), "quality": check("skipped"), "slo": check("fail", "slow")},
        MonitorConfig(retrain_on=retrain_on),
    )
    assert result.status == "fail"
    assert result.retrain is expected


# ----------------------------------------------------------------------------- estimate


def estimated(rows: int = 500, **metrics: float) -> Estimate:
    return Estimate(Method.cbpe, rows, metrics or {"accuracy": 0.8, "roc_auc": 0.85})


def judged_quality(labeled: int, **metrics: float) -> checks.QualityCheck:
    return checks.QualityCheck.judged([], labeled=labeled, metrics=metrics)


def test_estimate_below_its_floor_fails_naming_the_key_without_any_label():
    skipped = checks.QualityCheck.skipped("0 labeled predictions")
    result = checks.estimate(estimated(), {"roc_auc": 0.9}, 100, skipped)
    assert result.status == checks.FAIL
    assert result.failures == [
        "roc_auc 0.85 is below the SLO floor 0.90 (slo.estimated_quality_floor.roc_auc)"
    ]
    assert result.realized is None and result.disagreement is None
    assert "concept shift" in result.to_json()["blind_to"]


def test_estimate_of_too_few_predictions_is_skipped_but_keeps_the_realized_figures():
    result = checks.estimate(estimated(rows=40), {}, 100, judged_quality(40, accuracy=0.8))
    assert result.status == checks.SKIPPED and "40 predictions" in result.reason
    assert result.to_json()["realized"] == {"accuracy": 0.8}


def test_realized_and_estimated_disagree_only_beyond_sampling_noise():
    # 100 labels: noise allows 0.2; 10,000 labels: 0.05
    near = checks.estimate(estimated(), {}, 100, judged_quality(100, accuracy=0.65, r2=0.1))
    assert near.realized == {"accuracy": 0.65} and near.disagreement is None
    far = checks.estimate(estimated(), {}, 100, judged_quality(10_000, accuracy=0.65))
    assert far.disagreement.startswith("on 10,000 labels, accuracy realized 0.65, estimated 0.8")
    assert "concept shift" in far.disagreement
    # an error metric is compared as a fraction of the realized error
    errors = Estimate(Method.dle, 500, {"mae": 10.0, "rmse": 14.0})
    close = checks.estimate(errors, {}, 100, judged_quality(10_000, mae=10.4, rmse=14.5))
    assert close.disagreement is None
    apart = checks.estimate(errors, {}, 100, judged_quality(10_000, mae=20.0, rmse=14.5))
    assert apart.disagreement.startswith("on 10,000 labels, mae realized 20, estimated 10:")


def test_the_estimate_headline_puts_the_realized_figure_beside_the_estimated_one():
    unlabeled = checks.QualityCheck.skipped("no labels")
    alone = checks.estimate(estimated(), {}, 100, unlabeled)
    assert alone.headline() == "roc_auc 0.850 estimated without labels"
    both = checks.estimate(estimated(), {}, 100, judged_quality(500, roc_auc=0.8012))
    assert both.headline() == "roc_auc 0.850 estimated without labels, 0.801 realized"
    errors = Estimate(Method.dle, 500, {"mae": 10.0, "rmse": 14.0})
    assert checks.estimate(errors, {}, 100, unlabeled).headline().startswith("mae 10.000 estim")
    few = checks.estimate(estimated(rows=5), {}, 100, unlabeled)
    assert few.headline() == "not estimated: 5 predictions to estimate from, fewer than " + (
        "monitor.min_rows 100"
    )


def test_an_estimate_reads_back_from_its_json():
    result = checks.estimate(
        estimated(), {"accuracy": 0.7}, 100, judged_quality(500, accuracy=0.79)
    )
    assert checks.EstimateCheck.from_json(result.to_json()) == result


# ----------------------------------------------------------------------------- attribution


def test_attribution_compares_shares_not_magnitudes():
    """Twice the attributions everywhere is the same explanation: shares, not sizes, count."""
    reference = {"age": 1.0, "tenure": 3.0}
    result = checks.attribution(reference, {"age": 2.0, "tenure": 6.0}, 256, "log-odds", 0.1)
    assert result.status is checks.PASS and result.moved == []
    assert result.shares == {"tenure": [0.75, 0.75], "age": [0.25, 0.25]}


def test_attribution_fails_naming_the_columns_whose_share_moved_beyond_the_bound():
    reference = {"age": 1.0, "tenure": 3.0, "region": 1.0}  # 20%, 60%, 20%
    window = {"age": 2.75, "tenure": 1.75, "region": 0.5}  # 55%, 35%, 10%
    result = checks.attribution(reference, window, 300, "log-odds", 0.15)
    assert result.status is checks.FAIL
    assert result.moved == ["tenure", "age"]  # by the larger of their two shares
    (failure,) = result.failures
    assert "slo.max_attribution_shift 15%" in failure
    assert "tenure 60% -> 35%" in failure and "age 20% -> 55%" in failure
    assert "region" not in failure  # moved 10 points: within the bound
    # the summary line leads with the largest move
    assert result.headline() == (
        "share of the explanation: age 20% -> 55%, tenure 60% -> 35%, region 20% -> 10%"
    )


def test_attribution_of_a_column_only_one_side_has_counts_as_zero_on_the_other():
    result = checks.attribution({"age": 1.0}, {"age": 1.0, "new": 1.0}, 50, "price", 0.3)
    assert result.shares == {"age": [1.0, 0.5], "new": [0.0, 0.5]}
    assert result.moved == ["age", "new"]


def test_attribution_without_any_attribution_moves_nothing():
    result = checks.attribution({"age": 0.0}, {"age": 0.0}, 50, "price", 0.1)
    assert result.status is checks.PASS and result.shares == {"age": [0.0, 0.0]}


def test_an_attribution_check_reads_back_from_its_json():
    result = checks.attribution({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 1.0}, 64, "log-odds", 0.2)
    assert checks.AttributionCheck.from_json(result.to_json()) == result
    skipped = checks.AttributionCheck.skipped("no explain.json")
    assert checks.AttributionCheck.from_json(skipped.to_json()) == skipped
    assert skipped.headline() == "not compared: no explain.json"


# ----------------------------------------------------------------------------- latest verdict


def stored(status: str, version: int) -> dict:
    """A verdict.json as keel has written it since 2026-11 (the shape a reader must keep)."""
    return {
        "model": "churn",
        "version": version,
        "window": {"start": "2024-05-01T00:00:00+00:00", "end": "2024-05-02T00:00:00+00:00"},
        "rows": 2000,
        "reference_rows": 500,
        "files": {"html": "report.html", "verdict": "verdict.json"},
        "status": status,
        "failed": ["drift"] if status == "fail" else [],
        "retrain": status == "fail",
        "reasons": ["drift: 3 of 9 columns drifted"] if status == "fail" else [],
        "checks": {
            "drift": {
                "status": status,
                "failures": ["3 of 9 columns drifted"] if status == "fail" else [],
                "drifted_columns": ["age", "contract", "region"] if status == "fail" else [],
                "share": 0.33 if status == "fail" else 0.0,
                "max_share": 0.3,
                "columns": {
                    "age": {"method": "ks", "score": 0.001, "threshold": 0.05, "drifted": True}
                },
                "prediction": None,
            },
            "quality": {  # skipped: only what was known is written
                "status": "skipped",
                "reason": "50 labeled predictions (and 250 unscored), fewer than monitor.min_rows",
                "unscored": 250,
                "feedback": {"feedback": 300, "matched": 300},
            },
            "slo": {
                "status": "pass",
                "failures": [],
                "requests": 100,
                "latency_p99_ms": None,
                "error_rate": 0.0,
                "invalid_rate": 0.0,
            },
        },
    }


def write_run(reports: str, run: str, verdict: dict | None) -> str:
    run_dir = storage.join(reports, "churn", "monitor", run)
    storage.write_text(storage.join(run_dir, "report.html"), "<html></html>")
    if verdict is not None:
        storage.write_json(storage.join(run_dir, VERDICT), verdict)
    return run_dir


def test_latest_verdict_is_the_newest_run_with_a_verdict(tmp_path):
    reports = str(tmp_path / "reports")
    write_run(reports, "20240501-120000-000", stored("pass", 1))
    newest = write_run(reports, "20240502-080000-500", stored("fail", 2))
    write_run(reports, "20240502-090000-000", None)  # a run still writing, or one that crashed
    write_run(reports, "20240430-235959-999", stored("fail", 0))
    storage.write_text(storage.join(reports, "churn", "monitor", "zz-notes.txt"), "a file")
    path, verdict = latest_verdict(reports, "churn")
    assert path == storage.join(newest, VERDICT)
    assert (verdict.status, verdict.version) == ("fail", 2)
    assert json.loads(Path(path).read_text()) == verdict.to_json() == stored("fail", 2)
    # read as types: each check its kind, the figures as fields
    assert verdict.drift.drifted_columns == ["age", "contract", "region"]
    assert verdict.drift.columns["age"].drifted is True and verdict.drift.prediction is None
    assert (verdict.quality.status, verdict.quality.unscored) == ("skipped", 250)
    assert verdict.quality.labeled is None and verdict.quality.per_class_recall is None
    assert (verdict.slo.requests, verdict.slo.latency_p99_ms) == (100, None)
    assert verdict.failed == ["drift"] and verdict.reasons == ["drift: 3 of 9 columns drifted"]
    assert verdict.estimate is None  # written before the estimate check existed


def test_a_verdict_file_that_is_no_verdict_names_itself(tmp_path):
    reports = str(tmp_path / "reports")
    run = write_run(reports, "20240501-120000-000", {"status": "pass"})
    with pytest.raises(KeelError, match=r"verdict.json is not a monitor verdict"):
        latest_verdict(reports, "churn")
    assert run


def test_latest_verdict_is_per_model(tmp_path):
    reports = str(tmp_path / "reports")
    write_run(reports, "20240501-120000-000", stored("pass", 1))
    assert latest_verdict(reports, "listings") is None


def test_latest_verdict_none_without_any_verdict(tmp_path):
    reports = str(tmp_path / "reports")
    assert latest_verdict(reports, "churn") is None
    write_run(reports, "20240501-120000-000", None)
    assert latest_verdict(reports, "churn") is None

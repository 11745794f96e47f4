"""Multiclass quality monitoring without Ray: what serving and training log of a multiclass
prediction (every class's probability), `keel monitor` judging a multiclass version on joined
feedback (passes on healthy traffic, fails a concept shift on macro F1), the Evidently quality
report, the one class-label encoder and the retraining gate's class order."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from keel import prediction_log as plog
from keel import storage
from keel.config import to_dict
from keel.config.schema import ColumnSpec, ColumnType, Task
from keel.models import Head
from keel.models.infer import probabilities
from keel.monitoring import checks, monitor, report
from keel.monitoring.logs import Window
from keel.monitoring.retrain import _encoded_target, _in_class_order
from keel.quality import PRIMARY
from keel.registry import File, Registry
from keel.targets import Unknown, encode
from keel.training import estimator
from keel.training.metrics import evaluate

MULTI = Task.multiclass_classification
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]
ISLANDS = ["Biscoe", "Dream", "Torgersen"]
COLUMNS = {
    "bill_mm": ColumnSpec(type=ColumnType.float),
    "island": ColumnSpec(type=ColumnType.category, allowed=ISLANDS),
    "species": ColumnSpec(type=ColumnType.category, allowed=SPECIES),
}
INPUTS = {c: s for c, s in COLUMNS.items() if c != "species"}


def penguins(n: int, seed: int, right: float) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows, their class indexes and a model's probabilities whose top class (0.7) is the
    label for a `right` share of the rows and the next class otherwise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    rows = pd.DataFrame(
        {"bill_mm": 38.0 + 5.0 * y + rng.normal(0, 1, n), "island": rng.choice(ISLANDS, n)}
    )
    top = np.where(rng.random(n) < right, y, (y + 1) % 3)
    proba = np.full((n, 3), 0.15)
    proba[np.arange(n), top] = 0.7
    return rows, y, proba


@pytest.fixture
def cfg(make_cfg):
    base = make_cfg()
    dataset = dataclasses.replace(
        base.dataset,
        name="penguins",
        task=MULTI,
        target="species",
        id_column=None,
        timestamp_column=None,
        columns=COLUMNS,
        slices=[],
    )
    return dataclasses.replace(
        base,
        dataset=dataset,
        slo=dataclasses.replace(base.slo, quality_floor={"f1": 0.6}),
        monitor=dataclasses.replace(base.monitor, min_rows=50),
    )


def register(cfg) -> int:
    """A multiclass version as training registers it, as far as monitoring reads it: the head's
    labels, the dataset schema and the reference (training rows, score, probabilities)."""
    rows, y, proba = penguins(600, seed=1, right=0.9)
    reference = pa.Table.from_pandas(rows.assign(species=[SPECIES[i] for i in y]))
    reference = reference.append_column("prediction", pa.array(proba.max(1)))
    reference = reference.append_column(plog.PROBABILITIES, probabilities(proba))
    files = {
        File.spec: json.dumps(
            {
                "model": {"name": "mlp"},
                "in_features": len(INPUTS),
                "head": {"task": MULTI.value, "labels": SPECIES},
                "input_columns": list(INPUTS),
            }
        ),
        File.config: yaml.safe_dump({"dataset": to_dict(cfg.dataset)}),
        File.reference: storage.parquet_bytes(reference),
        # CBPE calibrated on held-out rows like the reference (what training fits on its val split)
        File.estimator: json.dumps(
            estimator.fit(
                MULTI, *penguins(600, seed=4, right=0.9)[1:], np.zeros((600, 0))
            ).to_json()
        ),
    }
    return Registry(cfg.paths.registry).register("penguins", files).version


def log_traffic(
    cfg, version: int, n: int, right: float, old: int = 0, feedback: bool = True
) -> None:
    """n served predictions with their labels as feedback (unless not `feedback`), as the
    serving app logs them; the first `old` of them in a file written before the log kept class
    probabilities, plus a label that is no species."""
    rows, y, proba = penguins(n, seed=2, right=right)
    now = plog.now()
    fixed = dict(ts=now, model="penguins", version=version, variant="primary", latency_ms=3.0)
    logged = [
        plog.prediction_row(
            {
                **fixed,
                "request_id": f"r{i}",
                "prediction": float(p.max()),
                plog.PROBABILITIES: p.tolist(),
                "output": "{}",
            },
            row,
        )
        for i, (row, p) in enumerate(zip(rows.to_dict("records"), proba, strict=True))
    ]
    schema = plog.prediction_schema(INPUTS)
    directory = plog.predictions_dir(cfg.paths.logs, "penguins")
    old_schema = pa.schema([f for f in schema if f.name != plog.PROBABILITIES])
    stale = [{k: v for k, v in r.items() if k != plog.PROBABILITIES} for r in logged[:old]]
    if old:
        plog.write(directory, pa.Table.from_pylist(stale, schema=old_schema), "a-old")
    plog.write(directory, pa.Table.from_pylist(logged[old:], schema=schema), "b-new")
    if not feedback:
        return
    feedback = [
        {"request_id": f"r{i}", "ts": now, "label": json.dumps(SPECIES[c])} for i, c in enumerate(y)
    ]
    feedback.append({"request_id": "r0", "ts": now - timedelta(seconds=1), "label": '"x"'})
    feedback.append({"request_id": "r1", "ts": now + timedelta(seconds=1), "label": '"Unicorn"'})
    table = pa.Table.from_pylist(feedback, schema=plog.FEEDBACK_SCHEMA)
    plog.write(plog.feedback_dir(cfg.paths.logs), table)


def window() -> Window:
    now = plog.now()
    return Window(now - timedelta(hours=1), now + timedelta(hours=1))


# ----------------------------------------------------------------------------- keel monitor


def test_monitor_judges_a_multiclass_version_on_its_feedback(cfg):
    version = register(cfg)
    log_traffic(cfg, version, n=400, right=0.9, old=30)
    m = monitor.run(cfg, "penguins", window(), version=version)

    quality = m.verdict.quality
    assert quality.status == checks.PASS, m.verdict.reasons
    # r0 and r1 got two labels each, the latest wins: r0's real one, r1's no species (invalid);
    # r0..r29 were logged without class probabilities: the 29 of them with a label are unscored
    assert quality.feedback["invalid"] == 1 and quality.feedback["duplicates"] == 2
    assert quality.feedback["matched"] == 399
    assert (quality.labeled, quality.unscored) == (400 - 30, 29)
    assert quality.metrics["f1"] > 0.8
    assert {"accuracy", "f1", "log_loss"} <= set(quality.metrics)
    _, y, proba = penguins(400, seed=2, right=0.9)  # the traffic: its scored rows are r30..
    y, hit = y[30:], proba[30:].argmax(1) == y[30:]
    expected = {name: np.mean(hit[y == c]) for c, name in enumerate(SPECIES)}
    assert quality.per_class_recall == pytest.approx(expected)
    assert list(quality.per_class_recall) == SPECIES
    assert quality.floor == {"f1": 0.6}
    assert quality.report_skipped is None
    assert {"quality_html", "quality_json"} <= set(m.files)
    on_disk = json.loads(Path(m.files["verdict"]).read_text())
    assert "report_skipped" not in on_disk["checks"]["quality"]
    assert on_disk["checks"]["quality"]["per_class_recall"] == quality.per_class_recall
    line = dict(monitor.describe(m))["quality"]
    assert line.startswith("pass: accuracy") and "recall per class: Adelie" in line
    assert "29 logged without class probabilities" in line
    # quality estimated without the labels, from the 370 rows logged with probabilities
    estimate = m.verdict.estimate
    assert (estimate.status, estimate.method, estimate.rows) == (checks.PASS, "cbpe", 370)
    for name in ("accuracy", "f1", "roc_auc"):
        assert estimate.metrics[name] == pytest.approx(quality.metrics[name], abs=0.05), name
    assert estimate.realized["accuracy"] == quality.metrics["accuracy"]
    assert estimate.disagreement is None and np.sum(estimate.confusion) == pytest.approx(370)
    assert on_disk["checks"]["estimate"]["realized"] == estimate.realized
    assert "concept shift" in on_disk["checks"]["estimate"]["blind_to"]
    assert dict(monitor.describe(m))["estimate"].startswith("pass: accuracy 0.")


def test_monitor_fails_a_multiclass_concept_shift_on_f1(cfg):
    version = register(cfg)
    log_traffic(cfg, version, n=400, right=0.2)
    m = monitor.run(cfg, "penguins", window(), version=version)

    quality = m.verdict.quality
    assert quality.status == checks.FAIL
    assert quality.metrics["f1"] < 0.6
    assert m.verdict.failed == ["quality"] and m.verdict.retrain is True
    (reason,) = m.verdict.reasons
    assert reason.startswith("quality: f1 ") and "slo.quality_floor.f1" in reason
    # the scores look as they did in training: the estimate cannot see the shift, and says so
    estimate = m.verdict.estimate
    assert estimate.status == checks.PASS and estimate.metrics["f1"] > 0.8
    assert "accuracy realized 0.1" in estimate.disagreement
    assert "concept shift" in estimate.disagreement
    assert "invisible" in dict(monitor.describe(m))["estimate note"]


def test_the_estimated_floor_fails_the_verdict_before_any_label(cfg):
    cfg = dataclasses.replace(
        cfg, slo=dataclasses.replace(cfg.slo, estimated_quality_floor={"accuracy": 0.95})
    )
    version = register(cfg)
    log_traffic(cfg, version, n=400, right=0.9, feedback=False)
    m = monitor.run(cfg, "penguins", window(), version=version)

    assert m.verdict.quality.status == checks.SKIPPED  # no label yet
    assert m.verdict.failed == ["estimate"] and m.verdict.retrain is True
    (reason,) = m.verdict.reasons
    assert reason.startswith("estimate: accuracy 0.")
    assert "below the SLO floor 0.95 (slo.estimated_quality_floor.accuracy)" in reason
    assert m.verdict.estimate.realized is None


# ----------------------------------------------------------------------------- the report


def labeled_frame(y: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"label": y.astype(np.float64), "prediction": proba.max(1)})
    frame[plog.PROBABILITIES] = pd.Series(list(proba), dtype=object)
    return frame


def test_quality_report_is_skipped_with_a_reason_when_a_class_has_no_label():
    _, y, proba = penguins(200, seed=3, right=0.9)
    keep = y != 1
    snapshot, why = report._quality(
        labeled_frame(y[keep], proba[keep]), pd.DataFrame(), MULTI, SPECIES
    )
    assert snapshot is None
    assert "Chinstrap" in why and "every class" in why


def test_class_frame_keeps_rows_with_a_label_and_every_probability():
    proba = np.array([[0.2, 0.8], [np.nan, np.nan], [0.6, 0.4], [0.5, 0.5]])
    frame = labeled_frame(np.array([1.0, 0.0, np.nan, 0.0]), proba)
    got = report._class_frame(frame, 2)
    assert got.to_dict("list") == {"0": [0.2, 0.5], "1": [0.8, 0.5], "label": ["1", "0"]}
    # a reference stored before versions kept class probabilities: no rows
    assert report._class_frame(frame.drop(columns=[plog.PROBABILITIES]), 2).empty


# ----------------------------------------------------------------------------- what is logged


def test_logged_probabilities_are_a_multiclass_row_each_and_null_otherwise():
    raw = np.array([[0.1, 0.9, 0.0], [0.5, 0.25, 0.25]], np.float32)
    logged = probabilities(raw)
    assert logged.type == pa.list_(pa.float64())
    np.testing.assert_allclose(np.array(logged.to_pylist()), raw)
    assert probabilities(np.array([0.3, 0.7])).to_pylist() == [None, None]
    assert len(probabilities(np.zeros((0, 3)))) == 0


def test_the_serving_path_logs_every_class_probability():
    """ModelRunner's result for a request, then the ingress's log rows from it."""
    from keel.serving.ingress import Ingress
    from keel.serving.model_server import ModelRunner

    raw = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], np.float32)

    class Version:
        version = 4

    class Predictor:
        version = Version()

        def predict_rows(self, rows):
            return raw[: len(rows)], [{"label": "x"} for _ in rows]

    results = [{}]
    requests = [[{"bill_mm": 40.0, "island": "Dream"}, {"bill_mm": 50.0, "island": "Biscoe"}]]
    ModelRunner._run(Predictor(), "primary", requests, results, [0])
    (result,) = results

    class Buffer:
        rows: list = []

        def append(self, rows):
            self.rows += rows

    class Self:
        logs = {"penguins": Buffer()}

    Ingress.func_or_class._log(Self(), "penguins", requests[0], ["a", "b"], result, 2.0)
    logged = Self.logs["penguins"].rows
    np.testing.assert_allclose([r[plog.PROBABILITIES] for r in logged], raw, rtol=1e-6)
    assert [r["prediction"] for r in logged] == pytest.approx([0.7, 0.6])
    table = pa.Table.from_pylist(logged, schema=plog.prediction_schema(INPUTS))
    assert table[plog.PROBABILITIES].type == pa.list_(pa.float64())


# ----------------------------------------------------------------------------- class labels


def test_head_encode_marks_a_class_it_never_saw():
    head = Head.fit(MULTI, np.array(SPECIES))
    encoded = head.encode(np.array(["Gentoo", "Unicorn", "Adelie"]))
    assert encoded.dtype == np.float32 and encoded.tolist() == [2.0, -1.0, 0.0]
    ints = Head.fit(MULTI, np.array([2, 0, 1, 2]))
    assert ints.encode(np.array([2, 1, 7])).tolist() == [2.0, 1.0, -1.0]


def test_reference_labels_not_a_class_are_nan():
    encoded = encode(["Gentoo", "Unicorn", "Adelie"], MULTI, SPECIES, Unknown.nan)
    assert encoded[[0, 2]].tolist() == [2.0, 0.0] and np.isnan(encoded[1])
    # numbers as the parquet holds them match int classes by value
    assert encode([2.0, 0.0], MULTI, [0, 1, 2], Unknown.nan).tolist() == [2.0, 0.0]


def test_holdout_target_of_no_class_is_an_error_not_a_key_error():
    with pytest.raises(ValueError, match="Unicorn"):
        _encoded_target(pa.chunked_array([["Adelie", "Unicorn"]]), MULTI, SPECIES)


# ----------------------------------------------------------------------------- retraining gate


def test_a_challenger_is_judged_in_the_champions_class_order():
    _, y, proba = penguins(300, seed=4, right=0.8)
    order = [2, 0, 1]  # a head whose labels came out in another order
    own = proba[:, order]
    labels = [SPECIES[i] for i in order]
    aligned = _in_class_order(own, labels, SPECIES)
    np.testing.assert_allclose(aligned, proba)
    assert PRIMARY[MULTI] == "f1"
    assert evaluate(MULTI, y, aligned)["f1"] == pytest.approx(evaluate(MULTI, y, proba)["f1"])
    assert evaluate(MULTI, y, own)["f1"] < 0.5  # what comparing unaligned columns would judge


def test_class_order_of_a_head_missing_a_class_or_holding_another():
    two = _in_class_order(np.array([[0.25, 0.75]]), ["Gentoo", "Adelie"], SPECIES)
    np.testing.assert_allclose(two, [[0.75, 0.0, 0.25]])  # Chinstrap: never predicted
    extra = _in_class_order(
        np.array([[0.2, 0.2, 0.6], [0.0, 0.0, 1.0]]), ["Adelie", "Gentoo", "Emperor"], SPECIES
    )
    np.testing.assert_allclose(extra, [[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]])

"""keel.monitoring.report on generated churn data: drift verdicts for planted shifts, the
prediction's drift, Evidently's quality snapshot and, on request, Evidently's own drift report
agreeing with keel's verdict, saved files and config errors. An Evidently report runs for
seconds, so there are few of them (test_drift_engine.py holds the engine to Evidently's
functions on files keel did not generate)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.config import load
from keel.config.schema import DriftConfig, DriftSpec
from keel.data.synthetic import generate
from keel.errors import ConfigError
from keel.monitoring import report

FEATURES = [
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "contract",
    "region",
    "payment_method",
    "internet_service",
    "support_calls",
]


@pytest.fixture(scope="module")
def cfg():
    return load(
        ["experiment=churn", "dataset.source.rows=4000", "dataset.source.invalid_fraction=0"]
    )


@pytest.fixture(scope="module")
def columns(cfg):
    return {c: cfg.dataset.columns[c] for c in FEATURES}


def churn(cfg, seed: int, **covariate: float) -> pd.DataFrame:
    """Churn rows with a fixed model's P(churn) as "prediction" and the truth as "label"."""
    source = replace(cfg.dataset.source, seed=seed, drift=DriftConfig(covariate=covariate))
    df = generate(replace(cfg.dataset, source=source)).to_pandas()
    logit = (
        -1.2
        - 0.03 * (df["age"] - 45)
        - 0.04 * (df["tenure_months"] - 24)
        + 0.3 * (df["support_calls"] - 1.5)
    )
    df["prediction"] = 1 / (1 + np.exp(-logit))
    df["label"] = df["churned"]
    return df[[*FEATURES, "prediction", "label"]]


def test_same_distribution_nothing_drifts(cfg, columns, tmp_path):
    # age by a p-value test (drift when p <= threshold), tenure by psi with its own threshold
    monitor = replace(
        cfg.monitor,
        columns={"age": DriftSpec(method="ks"), "tenure_months": DriftSpec("psi", 0.2)},
    )
    built = report.build(churn(cfg, 1), churn(cfg, 2), columns, cfg.dataset.task, monitor)

    drift = built.drift
    assert set(drift.columns) == set(FEATURES)
    assert not [c for c, r in drift.columns.items() if r.drifted]
    assert drift.share == 0.0
    assert drift.columns["age"].method == "ks" and drift.columns["age"].threshold == 0.05
    assert drift.columns["tenure_months"].method == "psi"
    assert drift.columns["tenure_months"].threshold == 0.2
    # Evidently's defaults above 1000 reference rows, reported by their config names
    assert drift.columns["monthly_charges"].method == "wasserstein"
    assert drift.columns["contract"].method == "jensenshannon"
    assert set(drift.prediction.to_json()) == {"method", "score", "threshold", "drifted"}
    assert drift.prediction.drifted is False
    assert built.snapshots == {}  # no labels, no evidently_report: Evidently makes nothing

    files = report.save(built, str(tmp_path / "out"))
    assert set(files) == {"html", "json"}
    page = Path(files["html"]).read_text()
    assert all(f"<b>{c}</b>" in page for c in [*FEATURES, "prediction"])
    assert "0 of 9 columns drifted" in page
    saved = json.loads(Path(files["json"]).read_text())
    assert (
        saved["drift"]["columns"] == {c: r.to_json() for c, r in drift.columns.items()}
        and saved["drift"]["share"] == 0.0
    )
    assert saved["columns"]["contract"]["kind"] == "cat"
    assert sum(saved["columns"]["age"]["reference_share"]) == pytest.approx(1.0)


def test_planted_shift_drifts_exactly_those_columns(cfg, columns, tmp_path):
    reference = churn(cfg, 1)
    current = churn(cfg, 2, age=1.5, contract=0.3)
    monitor = replace(cfg.monitor, columns={"age": DriftSpec(method="ks")})
    built = report.build(
        current, reference, columns, cfg.dataset.task, monitor, labeled=current.iloc[:1000]
    )

    drift = built.drift
    assert {c for c, r in drift.columns.items() if r.drifted} == {"age", "contract"}
    assert drift.share == pytest.approx(2 / len(FEATURES))
    assert drift.columns["age"].score <= 0.05  # a p-value: low means drift
    assert drift.columns["contract"].score >= drift.columns["contract"].threshold
    assert drift.prediction.drifted is True  # the prediction depends on age
    assert json.dumps({c: r.to_json() for c, r in drift.columns.items()})  # into verdict.json

    assert set(built.snapshots) == {"quality"}
    quality = built.snapshots["quality"].dict()["metrics"]
    assert any(m["metric_name"].startswith("RocAuc") for m in quality)

    out = f"file://{tmp_path}/out"  # a pyarrow filesystem URI, as for s3://
    files = report.save(built, out)
    assert set(files) == {"html", "json", "quality_html", "quality_json"}
    for name in ("report.html", "report.json", "quality.html", "quality.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["drift"]["columns"]
    assert saved["age"]["drifted"] and saved["contract"]["drifted"]
    assert "2 of 9 columns drifted" in (tmp_path / "out" / "report.html").read_text()


def test_evidently_report_on_request_agrees_with_the_verdict(cfg, columns, tmp_path):
    """Evidently's DataDriftPreset over the same frames and configured tests: the same method,
    score and verdict per column as keel's engine, and its report saved beside keel's."""
    reference, current = churn(cfg, 1), churn(cfg, 2, tenure_months=0.8, region=0.3)
    current.loc[current.index[:500], "support_calls"] = np.nan  # Evidently drops nulls too
    monitor = replace(
        cfg.monitor,
        evidently_report=True,
        columns={"age": DriftSpec(method="ks"), "tenure_months": DriftSpec("psi", 0.2)},
    )
    built = report.build(current, reference, columns, cfg.dataset.task, monitor)

    theirs = report.drift_results(built.snapshots["evidently"].dict())
    ours = {**built.drift.columns, "prediction": built.drift.prediction}
    assert set(theirs) == set(ours)
    for column, result in ours.items():
        assert replace(theirs[column], score=0) == replace(result, score=0), column
        assert theirs[column].score == pytest.approx(result.score, rel=1e-9), column
    assert {c for c, r in built.drift.columns.items() if r.drifted} >= {"tenure_months"}
    files = report.save(built, str(tmp_path / "out"))
    assert set(files) == {"html", "json", "evidently_html", "evidently_json"}
    assert Path(files["evidently_html"]).stat().st_size > 100_000  # Evidently's own page


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"columns": {"age": DriftSpec(method="foo")}}, "monitor.columns.age.method: unknown"),
        ({"drift": DriftSpec(method="ks")}, "monitor.drift.method: drift method 'ks' does not"),
        ({"prediction_drift": DriftSpec(method="z")}, "monitor.prediction_drift.method"),
        ({"columns": {"churned": DriftSpec()}}, "monitor.columns.churned: not a monitored"),
    ],
)
def test_bad_drift_config_names_the_key(cfg, columns, setting, message):
    frame = pd.DataFrame({c: [] for c in [*FEATURES, "prediction"]})
    with pytest.raises(ConfigError, match=message):
        report.build(frame, frame, columns, cfg.dataset.task, replace(cfg.monitor, **setting))


def test_the_page_escapes_any_text_in_names_and_values(cfg):
    """Column names and categories are the user's text: the page shows them, never runs them."""
    from keel.config.schema import ColumnSpec, ColumnType

    name = 'Größe <script>alert("x")</script> 🚀'
    columns = {name: ColumnSpec(type=ColumnType.category), "n": ColumnSpec(type=ColumnType.float)}
    rng = np.random.default_rng(0)
    values = ["<img src=x onerror=alert(1)>", "naïve", "\u202eRTL", "🚀", ""]
    frame = pd.DataFrame({name: rng.choice(values, 2000), "n": rng.normal(size=2000)})
    built = report.build(frame, frame.iloc[::-1], columns, cfg.dataset.task, cfg.monitor)

    page = built.html
    assert "<script>" not in page and "<img" not in page
    assert "Größe &lt;script&gt;" in page and "🚀" in page
    assert set(built.drift.columns) == {name, "n"} and built.drift.share == 0.0
    assert json.dumps(built.to_dict(), ensure_ascii=False)


def test_a_column_null_in_the_window_is_shown_but_not_compared(cfg, columns):
    reference, current = churn(cfg, 1), churn(cfg, 2)
    current["age"] = np.nan
    current["contract"] = None
    built = report.build(current, reference, columns, cfg.dataset.task, cfg.monitor)

    assert set(built.drift.columns) == set(FEATURES) - {"age", "contract"}
    assert built.columns["age"].current.count == 0 and built.columns["age"].current.missing == 1
    assert "Not compared (all null on one side): age, contract" in built.html

"""keel.monitoring.report on generated churn data: Evidently's drift verdicts for planted shifts,
the prediction's drift, the quality snapshot, saved files and config errors. Each report runs
Evidently for about two seconds, so there are few of them."""

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
    assert not [c for c, r in drift.columns.items() if r["drifted"]]
    assert drift.share == 0.0
    assert drift.columns["age"]["method"] == "ks" and drift.columns["age"]["threshold"] == 0.05
    assert drift.columns["tenure_months"]["method"] == "psi"
    assert drift.columns["tenure_months"]["threshold"] == 0.2
    # Evidently's defaults above 1000 reference rows, reported by their config names
    assert drift.columns["monthly_charges"]["method"] == "wasserstein"
    assert drift.columns["contract"]["method"] == "jensenshannon"
    assert set(drift.prediction) == {"method", "score", "threshold", "drifted"}
    assert drift.prediction["drifted"] is False
    assert len(built.snapshots) == 1

    files = report.save(built, str(tmp_path / "out"))
    assert set(files) == {"html", "json"}
    assert all(Path(p).stat().st_size > 0 for p in files.values())


def test_planted_shift_drifts_exactly_those_columns(cfg, columns, tmp_path):
    reference = churn(cfg, 1)
    current = churn(cfg, 2, age=1.5, contract=0.3)
    monitor = replace(cfg.monitor, columns={"age": DriftSpec(method="ks")})
    built = report.build(
        current, reference, columns, cfg.dataset.task, monitor, labeled=current.iloc[:1000]
    )

    drift = built.drift
    assert {c for c, r in drift.columns.items() if r["drifted"]} == {"age", "contract"}
    assert drift.share == pytest.approx(2 / len(FEATURES))
    assert drift.columns["age"]["score"] <= 0.05  # a p-value: low means drift
    assert drift.columns["contract"]["score"] >= drift.columns["contract"]["threshold"]
    assert drift.prediction["drifted"] is True  # the prediction depends on age
    assert json.dumps(drift.columns)  # plain types: it goes into verdict.json

    assert len(built.snapshots) == 2
    quality = built.snapshots[1].dict()["metrics"]
    assert any(m["metric_name"].startswith("RocAuc") for m in quality)

    out = f"file://{tmp_path}/out"  # a pyarrow filesystem URI, as for s3://
    files = report.save(built, out)
    assert set(files) == {"html", "json", "quality_html", "quality_json"}
    for name in ("report.html", "report.json", "quality.html", "quality.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    metrics = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]
    assert any(m["config"].get("column") == "age" for m in metrics)


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

"""Monitoring and retraining on logs of real predictions.

Traffic comes from the churn generator with its drift knobs, is predicted by the registered
model exactly as a replica predicts it (Predictor), and lands in the serving logs through the
same writer a replica uses, with ground-truth labels as feedback. Seeds vary the traffic.
Retraining runs real Ray Train jobs on a copy of the shared registry.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from keel import prediction_log as plog
from keel import storage
from keel.config import load
from keel.data.synthetic import generate
from keel.monitoring.monitor import run
from keel.registry import Registry
from keel.serving.predictor import Predictor

FLOOR = "slo.quality_floor.roc_auc=0.65"
SEEDS = (11, 12, 13)


def config(root: str, logs: str, *overrides: str):
    return load(
        [
            "experiment=churn",
            f"paths.root={root}",
            f"paths.logs={logs}",
            "ray.progress_bars=false",
            FLOOR,
            *overrides,
        ]
    )


def log_traffic(cfg, seed: int, rows: int = 2000, covariate=None, concept: float = 0.0):
    """Generated rows -> production predictions -> prediction, request and feedback logs."""
    import dataclasses

    ds = cfg.dataset
    drift = dataclasses.replace(ds.source.drift, covariate=covariate or {}, concept=concept)
    source = dataclasses.replace(ds.source, seed=seed, rows=rows, invalid_fraction=0.0, drift=drift)
    table = generate(dataclasses.replace(ds, source=source))
    predictor = Predictor.load(Registry(cfg.paths.registry), ds.name)
    raw = predictor.predict(table)
    inputs = table.drop_columns([ds.target]).to_pylist()
    ids = [uuid.uuid4().hex for _ in inputs]
    now = plog.now()
    flush = dict(flush_rows=10**9, flush_seconds=10**9)
    schema = plog.prediction_schema(predictor.request_columns)
    preds = plog.ParquetLog(plog.predictions_dir(cfg.paths.logs, ds.name), schema, **flush)
    fixed = dict(ts=now, model=ds.name, version=predictor.version.version, variant="primary")
    preds.append(
        [
            plog.prediction_row(
                {**fixed, "request_id": i, "latency_ms": 5.0, "prediction": float(p)},
                {**row, "signup_ts": str(row["signup_ts"])},
            )
            | {"output": "{}"}
            for i, row, p in zip(ids, inputs, raw, strict=True)
        ]
    )
    requests = plog.ParquetLog(
        plog.requests_dir(cfg.paths.logs, ds.name), plog.REQUEST_SCHEMA, **flush
    )
    requests.append(
        [
            dict(ts=now, model=ds.name, status=200, reason=None, rows=20, latency_ms=5.0)
            for _ in range(rows // 20)
        ]
    )
    feedback = plog.ParquetLog(plog.feedback_dir(cfg.paths.logs), plog.FEEDBACK_SCHEMA, **flush)
    labels = table[ds.target].to_pylist()
    feedback.append(
        [
            {"request_id": i, "ts": now, "label": json.dumps(y)}
            for i, y in zip(ids, labels, strict=True)
        ]
    )
    for log in (preds, requests, feedback):
        log.flush()
    return ids


@pytest.mark.parametrize("seed", SEEDS)
def test_no_drift_passes(trained_root, tmp_path, seed):
    cfg = config(trained_root, str(tmp_path / "logs"), f"paths.reports={tmp_path}/reports")
    log_traffic(cfg, seed)
    m = run(cfg)
    checks = m.verdict["checks"]
    assert checks["drift"]["drifted_columns"] == []
    assert m.verdict["status"] == "pass", m.verdict["reasons"]
    assert checks["quality"]["labeled"] == 2000
    assert checks["slo"]["status"] == "pass"
    assert storage.exists(m.files["html"]) and storage.exists(m.files["verdict"])


@pytest.mark.parametrize("seed", SEEDS)
def test_shift_on_two_columns_flags_exactly_them(trained_root, tmp_path, seed):
    cfg = config(trained_root, str(tmp_path / "logs"), f"paths.reports={tmp_path}/reports")
    log_traffic(cfg, seed, covariate={"age": 1.0, "contract": 0.4})
    checks = run(cfg).verdict["checks"]
    assert checks["drift"]["drifted_columns"] == ["age", "contract"]


@pytest.mark.parametrize("seed", SEEDS)
def test_concept_shift_is_caught_by_quality_not_drift(trained_root, tmp_path, seed):
    cfg = config(trained_root, str(tmp_path / "logs"), f"paths.reports={tmp_path}/reports")
    log_traffic(cfg, seed, concept=1.0)
    m = run(cfg)
    checks = m.verdict["checks"]
    assert checks["drift"]["drifted_columns"] == []
    assert checks["drift"]["prediction"]["drifted"] is False
    assert checks["quality"]["status"] == "fail"
    assert checks["quality"]["metrics"]["roc_auc"] < 0.65
    assert m.verdict["failed"] == ["quality"] and m.verdict["retrain"] is True


def own_registry(trained_root: str, tmp_path) -> str:
    """A copy of the shared registry: retraining moves stages other tests rely on."""
    root = tmp_path / "out"
    shutil.copytree(f"{trained_root}/registry", root / "registry")
    return str(root)


RETRAIN = ("dataset.source.rows=3000", "train.epochs=3", "train.cpus_per_worker=0.5")


def test_retrain_promotes_a_better_challenger(trained_root, tmp_path):
    from keel.monitoring.retrain import retrain

    root = own_registry(trained_root, tmp_path)
    cfg = config(root, f"{root}/logs", *RETRAIN, "monitor.retrain.recent_weight=3")
    log_traffic(cfg, 21, rows=3000, concept=1.0)
    assert run(cfg).verdict["retrain"] is True
    registry = Registry(cfg.paths.registry)
    before = registry.stages("churn")["production"]
    decision = retrain(cfg)
    record = storage.read_json(decision.path)
    assert decision.promoted, decision.reason
    challenger = record["challenger"]["version"]
    assert registry.stages("churn")["production"] == challenger != before
    assert record["challenger"]["holdout"]["roc_auc"] > record["champion"]["holdout"]["roc_auc"]
    assert record["data"]["holdout"] > 0 and record["data"]["recent_train"] > 0
    # the new version's reference is the traffic it was retrained for: no drift against it
    log_traffic(cfg, 22, rows=2000, concept=1.0)
    after = run(cfg)
    assert after.version == challenger
    assert after.verdict["checks"]["quality"]["status"] == "pass", after.verdict["reasons"]


def test_retrain_refuses_a_degraded_challenger(trained_root, tmp_path):
    from keel.monitoring.retrain import retrain

    root = own_registry(trained_root, tmp_path)
    degrade = ("train.epochs=1", "train.lr=1e-6")
    cfg = config(root, f"{root}/logs", *RETRAIN, *degrade)
    log_traffic(cfg, 31, rows=2000)
    registry = Registry(cfg.paths.registry)
    stages = registry.stages("churn")
    not_asked = retrain(cfg, list(degrade))
    assert not not_asked.promoted and "verdict" in not_asked.reason
    decision = retrain(cfg, list(degrade), force=True)
    assert not decision.promoted
    assert "does not beat" in decision.reason
    assert registry.stages("churn")["production"] == stages["production"]
    record = storage.read_json(decision.path)
    assert record["challenger"]["holdout"]["roc_auc"] < record["champion"]["holdout"]["roc_auc"]

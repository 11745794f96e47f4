"""The benchmarks' baselines do keel's work: on a small input each computes what keel computes
(the same drifted columns, the same validation loss), so their timings compare like with like.
(The features baseline's matrix is checked in tests/unit/test_bench.py.)"""

from __future__ import annotations

import pytest

from benchmarks import monitor as bench_monitor
from benchmarks import train as bench_train
from benchmarks import trees as bench_trees
from keel import prediction_log as plog
from keel.config import load
from keel.monitoring import monitor
from keel.registry import Registry
from keel.training.dataset import prepare

ROWS = 3000


def test_the_monitor_baseline_flags_the_columns_keel_flags(own_root, log_traffic):
    cfg = load(["experiment=churn", f"paths.root={own_root}", "ray.progress_bars=false"])
    assert cfg.monitor.current_sample >= ROWS  # both sides see every row: nothing to draw apart
    log_traffic(cfg, seed=11, rows=ROWS, covariate={"age": 1.5, "contract": 0.5})
    keel = monitor.run(cfg).verdict.drift

    registry = Registry(cfg.paths.registry)
    served = monitor.Served.load(registry, registry.get("churn", "production"))
    logged = bench_monitor.Logged(served, plog.predictions_dir(cfg.paths.logs, "churn"), ROWS, 1)
    drifted: dict = {}
    bench_monitor.run_baseline(cfg, logged, drifted)
    assert {"age", "contract"} <= set(keel.drifted_columns)
    assert drifted["baseline"]["columns"] == keel.drifted_columns
    assert drifted["baseline"]["prediction"] == keel.prediction.drifted


def test_the_train_baseline_reaches_keels_validation_loss(make_cfg):
    cfg = make_cfg(
        "experiment=churn",
        "bench=train",
        "dataset.source.rows=2000",
        "train.epochs=3",
        "train.early_stopping_patience=0",
        "train.cpus_per_worker=1",
    )
    data = prepare(cfg)
    arrays = bench_train.split_arrays(data)
    keel = bench_train.run_keel(cfg, data)
    baseline = bench_train.run_baseline(cfg, data, arrays, threads=1)
    fused = bench_train.run_baseline(cfg, data, arrays, threads=1, fused=True)
    # keel's fused optimizer computes torch's default update: the same loss either way
    assert keel["val_loss"] == pytest.approx(baseline["val_loss"], rel=1e-4)
    assert fused["val_loss"] == pytest.approx(baseline["val_loss"], rel=1e-4)
    assert 0 < keel["fixed_s"] < keel["wall_s"]


def test_the_trees_baseline_reaches_keels_test_metric(make_cfg):
    cfg = make_cfg(
        "experiment=churn",
        "bench=trees",
        "dataset.source.rows=3000",
        "model=xgboost",
        "model.trees.rounds=20",
        "model.trees.report_every=5",
        "model.trees.early_stopping_rounds=0",
        "train.cpus_per_worker=1",
    )
    data = prepare(cfg)
    arrays = bench_train.split_arrays(data)
    keel = bench_trees.run_keel(cfg, data)
    baseline = bench_trees.run_baseline(cfg, data, arrays)
    # the same parameters, rounds, threads and seed on one worker: the same trees
    assert keel["test_metric"] == pytest.approx(baseline["test_metric"], abs=bench_trees.AGREE)
    assert 0 < keel["fixed_s"] < keel["wall_s"] and keel["s_per_round"] > 0

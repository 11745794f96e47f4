"""Gradient-boosted trees (model=xgboost, model=lightgbm) through the loop, on the hand-made
files of tests/data/own (multiclass penguins, binary tumors, regression rentals), configured by
`keel init` as a newcomer's would be: each family trains on Ray Train, registers a version
that beats the trivial baseline, serves over HTTP (XGBoost as production, LightGBM as a 50%
canary in one app) and answers as batch inference's scorer does; `keel leaderboard` ranks a
network and trees and registers the best on validation loss.

(tests/conftest.py's churn v2 is an XGBoost version too: the serving module's canary, shadow,
promotion and batch tests run across families on it.)"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
import ray
import requests

from keel.cli.init import SAMPLE_ROWS, Request, init
from keel.config import load
from keel.config.schema import CanaryConfig, Family, ServedModel
from keel.data.batch import json_rows
from keel.data.validation import validate_source
from keel.prediction_log import PROBABILITIES
from keel.registry import Registry
from keel.registry.bundle import Stored
from keel.serving import service
from keel.serving.batch import score
from keel.serving.predictor import Predictor
from keel.training.leaderboard import leaderboard
from keel.training.run import train

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / "tests" / "data" / "own"

# name, target, primary metric, the least each family must reach on the test split (the
# trivial baseline: macro F1 ~0.2, ROC AUC 0.5, R2 0)
CASES = [
    ("penguins", "species", "f1", 0.85),
    ("tumors", "diagnosis", "roc_auc", 0.90),
    ("rentals", "rentals", "r2", 0.50),
]
FAMILIES = (Family.xgboost, Family.lightgbm)  # registered as v1, v2 of each model
FAST = ("model.trees.rounds=200", "model.trees.report_every=20", "train.cpus_per_worker=0.5")
# data parallel: these train on two Ray Train workers (XGBoost's collective all-reduces
# histograms, LightGBM's workers talk over Ray Train's network parameters); the rest in this
# process (train.num_workers=0; test_training.py runs each family on one Train worker)
TWO_WORKERS = {("rentals", Family.xgboost), ("penguins", Family.lightgbm)}


def workers(name: str, family: Family) -> int:
    return 2 if (name, family) in TWO_WORKERS else 0


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    """A copy of keel's config tree with `keel init`'s files for the three own files."""
    conf = tmp_path_factory.mktemp("trees") / "conf"
    shutil.copytree(ROOT / "conf", conf)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KEEL_CONFIG_DIR", str(conf))
        for name, target, _, _ in CASES:
            init(
                Request(
                    str(OWN / f"{name}.csv"), target, name, None, SAMPLE_ROWS, None, None, False
                )
            )
        yield conf


def config(conf: Path, root: str, *overrides: str):
    os.environ["KEEL_CONFIG_DIR"] = str(conf)
    try:
        return load([f"paths.root={root}", "ray.progress_bars=false", *overrides])
    finally:
        del os.environ["KEEL_CONFIG_DIR"]


@pytest.fixture(scope="module")
def trained(conf, tmp_path_factory) -> str:
    """paths.root of a registry holding, per file, XGBoost as v1 and LightGBM as v2. The files
    train side by side (each run mostly waits on Ray Train's start-up), each file's two
    versions in order; configs are composed first (Hydra's global state is not threadsafe)."""
    root = str(tmp_path_factory.mktemp("trees-out"))
    runs = {
        name: [
            config(
                conf,
                root,
                f"experiment={name}",
                f"model={family}",
                f"train.num_workers={workers(name, family)}",
                *FAST,
            )
            for family in FAMILIES
        ]
        for name, *_ in CASES
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        list(pool.map(lambda cfgs: [train(c) for c in cfgs], runs.values()))
    return root


@pytest.mark.parametrize(("name", "target", "metric", "least"), CASES)
def test_each_family_trains_registers_and_beats_the_baseline(trained, name, target, metric, least):
    registry = Registry(f"{trained}/registry")
    for version, family in enumerate(FAMILIES, start=1):
        stored = Stored.get(registry, name, version)
        assert stored.spec().family == family
        m = stored.metrics()
        assert m["primary_metric"] == metric
        assert m["test"][metric] >= least, (family, m["test"])
        assert m["test"][metric] > m["baseline"][metric] + 0.3, (family, m)
        rounds = m["history"]
        assert rounds and all(h["unit"] == "round" for h in rounds)
        assert {h["workers"] for h in rounds} == {max(workers(name, family), 1)}
        # the best is tracked over every round, the reports see every report_every-th
        assert rounds[-1]["best_val_loss"] <= min(h["val_loss"] for h in rounds) + 1e-6
        assert stored.latency()["ms_per_batch"]["32"] > 0
        assert f"- Model: {family}" in registry.read_text(stored.version, "MODEL_CARD.md")
        assert stored.reference().num_rows > 0  # monitoring's reference, with predictions


def test_both_families_serve_over_http_and_answer_as_batch_inference(
    conf, trained, serve_port, tmp_path
):
    cfg = config(conf, trained, f"experiment={CASES[0][0]}", f"serve.port={serve_port}")
    canary = CanaryConfig(version="2", percent=50.0)
    models = {name: ServedModel(version="1", canary=canary) for name, *_ in CASES}
    cfg = dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, models=models))
    registry = Registry(cfg.paths.registry)
    base = service.start(cfg)
    try:
        for name, *_ in CASES:
            dataset = config(conf, trained, f"experiment={name}").dataset
            valid = validate_source(dataset, str(tmp_path / "reports")).valid
            table = pa.concat_tables(ray.get(valid.to_arrow_refs())).slice(0, 40)
            # what batch inference computes for each block (keel predict maps it over the
            # file with Ray Data; tests/integration/test_serving.py runs that whole job)
            batch = {v: batch_predictions(Predictor.load(registry, name, v), table) for v in (1, 2)}
            answered = {1: 0, 2: 0}
            for i, row in enumerate(json_rows(table, drop=(dataset.target,))):
                r = requests.post(f"{base}/v1/models/{name}:predict", json={"instances": [row]})
                assert r.status_code == 200, (name, r.text)
                body = r.json()
                want = batch[body["version"]][i]
                assert body["predictions"][0]["prediction"] == pytest.approx(want, rel=1e-5)
                answered[body["version"]] += 1
            assert answered[1] and answered[2], (name, answered)  # both families answered
    finally:
        service.stop(cfg)


def batch_predictions(predictor: Predictor, table: pa.Table) -> list:
    """Batch inference's output for these rows: the prediction per row, every class's
    probability for a multiclass model (as the API answers)."""
    out = score(predictor, table, None)
    column = PROBABILITIES if PROBABILITIES in out.column_names else "prediction"
    return out.column(column).to_pylist()


def test_the_leaderboard_tries_networks_and_trees_and_registers_the_best_on_validation(
    conf, tmp_path
):
    cfg = config(
        conf,
        str(tmp_path),
        "experiment=tumors",
        "leaderboard.models=[linear,lightgbm]",
        "leaderboard.trials_per_model=1",
        "leaderboard.budget=10m",
        "train.cpus_per_worker=0.5",
        "tracking.mode=disabled",
    )
    board = leaderboard(cfg)
    assert [e.model for e in board.entries] != [] and not board.missing
    assert {e.model for e in board.entries} == {"linear", "lightgbm"}
    losses = [e.val_loss for e in board.entries]
    assert losses == sorted(losses)  # ranked on validation, never on the test split
    for e in board.entries:
        assert e.primary == "roc_auc" and e.test["roc_auc"] > e.baseline["roc_auc"] + 0.3, e
        p99, median = e.latency["p99_ms_per_batch"], e.latency["ms_per_batch"]
        assert e.size_bytes > 0 and e.train_seconds > 0 and p99["1"] >= median["1"] > 0
    best = board.entries[0]
    stored = Stored(Registry(cfg.paths.registry), board.registered.version)
    assert stored.spec().family == best.family
    assert stored.metrics()["test"] == pytest.approx(best.test)  # the same model, evaluated
    saved = json.loads(Path(board.results_path).read_text())
    assert [e["model"] for e in saved["entries"]] == [e.model for e in board.entries]
    assert saved["registered"] == {"model": best.model, "version": 1}

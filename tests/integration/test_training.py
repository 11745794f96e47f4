"""Training on the shared Ray session: reproducibility, recovery from a killed worker, sweeps."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from keel import storage
from keel.errors import ConfigError, TrainingFailed
from keel.registry import Registry
from keel.training import checkpoint
from keel.training.checkpoint import BEST
from keel.training.dataset import prepare
from keel.training.leaderboard import leaderboard
from keel.training.run import train
from keel.training.sweep import sweep

SMALL = ("dataset.source.rows=4000", "train.epochs=3", "train.cpus_per_worker=0.5")


def test_same_seed_and_data_give_the_same_metrics_on_a_worker_and_in_this_process(make_cfg):
    cfg = make_cfg(*SMALL)
    data = prepare(cfg)
    first, second = train(cfg, data), train(make_cfg(*SMALL, "train.num_workers=0"), data)
    assert first.metrics["test"] == second.metrics["test"]
    assert [h["val_loss"] for h in first.history] == [h["val_loss"] for h in second.history]
    assert (first.version.version, second.version.version) == (1, 2)
    assert first.metrics["test"]["roc_auc"] > first.metrics["baseline"]["roc_auc"] + 0.15


def test_a_dataset_without_slices_is_evaluated(make_cfg):
    """The raw target travelled only with slice columns: no slices was a KeyError 'y'."""
    from keel.config import to_dict
    from keel.models import build, infer
    from keel.training.evaluate import evaluate

    cfg = make_cfg("dataset.source.rows=2000", "dataset.slices=[]")
    data = prepare(cfg)
    model = build(to_dict(cfg.model), len(data.features.output_columns), data.head.outputs)
    predict = functools.partial(infer.predict, model, data.head)
    metrics = evaluate(predict, data.head, data.datasets["test"], cfg.dataset, data.y_train)
    assert metrics["slices"] == {}
    assert metrics["rows"] == data.datasets["test"].count() > 0
    assert 0.0 <= metrics["test"]["roc_auc"] <= 1.0


# family -> its overrides and the epochs (torch) or boosting rounds (trees) its reports name
KILLED = {
    "torch": (
        (
            "train.epochs=6",
            "train.batch_size=64",
            "train.early_stopping_patience=0",
            "train.in_memory_values=0",  # streams from Ray Data each epoch: that path resumes too
        ),
        list(range(6)),
    ),
    "xgboost": (
        (
            "model=xgboost",
            "model.trees.rounds=600",
            "model.trees.report_every=20",
            "model.trees.early_stopping_rounds=0",
            "model.trees.learning_rate=0.02",
        ),
        list(range(19, 600, 20)),
    ),
}


@pytest.mark.parametrize("family", KILLED)
def test_a_killed_train_worker_is_replaced_and_resumes_from_its_checkpoint(
    make_cfg, session_workers, family
):
    overrides, reported = KILLED[family]
    cfg = make_cfg(
        "dataset.source.rows=60000",
        "train.max_failures=2",
        "train.checkpoint_seconds=0",  # a checkpoint every report: one to resume from early
        *overrides,
    )
    outcome = _train_and_kill_a_worker(cfg, session_workers)
    history = outcome["result"].history
    assert [h["epoch"] for h in history] == reported  # every one, none twice
    resumed = [h["resumed_from"] for h in history if h["resumed_from"] >= 0]
    assert resumed, "training restarted from scratch instead of the checkpoint"
    assert history[-1]["resumed_from"] == resumed[0] >= 0
    assert Registry(cfg.paths.registry).get("churn", "latest").version == 1


def test_a_run_out_of_restarts_fails_naming_why_and_registers_nothing(make_cfg, session_workers):
    """train.max_failures=0: the killed worker ends the run with one sentence (no Ray
    traceback) that says what failed and what would have resumed it."""
    cfg = make_cfg(
        "dataset.source.rows=60000",
        "train.max_failures=0",
        "train.checkpoint_seconds=0",
        *KILLED["torch"][0],
    )
    outcome = _train_and_kill_a_worker(cfg, session_workers)
    error = outcome["error"]
    assert isinstance(error, TrainingFailed), repr(error)
    message = str(error)
    print(f"out of restarts: {message}")
    assert message.startswith("training churn-") and "worker 0: " in message, message
    assert "train.max_failures=0" in message and "no version was registered" in message
    assert "\n" not in message and "Traceback" not in message
    assert Registry(cfg.paths.registry).versions("churn") == []


def _train_and_kill_a_worker(cfg, session_workers) -> dict:
    """Train cfg on a thread, SIGKILL its Train worker once the run has registered a
    checkpoint, and wait: {"result": Trained} or {"error": the exception train raised}."""
    outcome: dict = {}
    started = time.time()

    def run() -> None:
        try:
            outcome["result"] = train(cfg)
        except Exception as e:  # the test asserts on it
            outcome["error"] = e

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    snapshots = Path(cfg.paths.checkpoints).glob
    deadline = time.time() + 300
    # Resuming uses the checkpoints the controller has registered in its snapshot, not every
    # directory on disk: wait until it has registered one.
    while not _registered(snapshots("*/checkpoint_manager_snapshot.json")):
        assert time.time() < deadline, "no checkpoint was registered"
        time.sleep(0.2)
    workers = [  # this run's worker, not a process left by an earlier test
        p
        for p, cmdline in session_workers().items()
        if any("RayTrainWorker" in part for part in cmdline) and p.create_time() >= started
    ]
    assert workers, "no live Train worker to kill"
    os.kill(workers[0].pid, signal.SIGKILL)
    runner.join(timeout=600)
    assert outcome, "training did not end"
    return outcome


def _registered(snapshots) -> bool:
    for path in snapshots:
        try:
            if json.loads(path.read_text()).get("checkpoint_results"):
                return True
        except (json.JSONDecodeError, OSError):  # being written right now
            pass
    return False


# the model's overrides, the trials and the space the sweep config searches
SWEEPS = {
    # three trials on two concurrent slots: the third waits for a slot a finished trial frees
    "torch": (SMALL, 3, {"train.lr", "model.dropout"}),
    "lightgbm": (
        (
            "dataset.source.rows=4000",
            "model=lightgbm",
            "sweep=trees",
            "model.trees.rounds=60",
            "sweep.grace_period=20",  # rounds
            "train.cpus_per_worker=0.5",
        ),
        2,
        {
            "model.trees.max_depth",
            "model.trees.learning_rate",
            "model.trees.num_leaves",
            "model.trees.min_child_weight",
            "model.trees.reg_lambda",
        },
    ),
}


@pytest.mark.parametrize("family", SWEEPS)
def test_an_asha_sweep_completes_on_two_cpus_and_registers_its_best_trial(make_cfg, family):
    overrides, trials, space = SWEEPS[family]
    cfg = make_cfg(
        *overrides,
        f"sweep.samples={trials}",
        "sweep.concurrency=2",
        "experiment=listings",
        "tracking.mode=disabled",
    )
    result = sweep(cfg)
    assert len(result.table) == trials
    assert set(result.best_params) == space
    best = result.table.iloc[0]
    assert best["val_loss"] == result.table["val_loss"].min()
    assert Path(result.results_path).exists()
    registered = Registry(cfg.paths.registry).get("listings", "latest")
    config = Registry(cfg.paths.registry).read_text(registered, "config.yaml")
    for path, value in result.best_params.items():
        assert f"{path.rsplit('.', 1)[1]}: {value}" in config
    # the best trial's own weights are registered, not a second training run's
    history = Registry(cfg.paths.registry).read_json(registered, "metrics.json")["history"]
    assert min(h["val_loss"] for h in history) == best["val_loss"]
    time.sleep(2)  # removals are asynchronous
    assert ray.available_resources().get("CPU") == ray.cluster_resources()["CPU"] == 2


@pytest.mark.parametrize("search", [sweep, leaderboard])
def test_tune_trials_refuse_training_in_this_process(make_cfg, search):
    with pytest.raises(ConfigError, match=r"train\.num_workers=1 or more"):
        search(make_cfg("train.num_workers=0", "tracking.mode=disabled"))


def train_actors() -> int:
    """Ray Train's controllers and workers this Ray session has started, living or dead (from
    the GCS's actor table: the state API needs the dashboard, which keel's Ray leaves out)."""
    from ray._private.state import actors

    names = {"TrainController", "RayTrainWorker"}
    return sum(a["ActorClassName"] in names for a in actors().values())


# family -> its overrides and the reports an in-process run of them makes
IN_PROCESS = {
    "torch": (("train.epochs=3", "train.early_stopping_patience=0"), "epoch 3/3"),
    "xgboost": (("model=xgboost", "model.trees.rounds=40"), "/40  train_loss"),
}


@pytest.mark.parametrize("family", IN_PROCESS)
def test_no_workers_trains_in_this_process_and_keeps_its_checkpoint(
    make_cfg, s3_root, caplog, family
):
    """train.num_workers=0 is Ray Train's local mode: the loop runs in this process with no
    Train controller or worker started, its last checkpoint is copied to the run's storage
    (S3 here) and the version is registered from it; each report still logs its line."""
    overrides, last_line = IN_PROCESS[family]
    checkpoints = f"{s3_root}/in-process-{family}"
    cfg = make_cfg(
        "dataset.source.rows=2000",
        "train.num_workers=0",
        f"paths.checkpoints={checkpoints}",
        *overrides,
    )
    data = prepare(cfg)
    before, threads = train_actors(), torch.get_num_threads()
    with caplog.at_level(logging.INFO, logger="keel.training"):
        out = train(cfg, data)
    assert train_actors() == before  # none started, living or dead
    assert torch.get_num_threads() == threads  # a worker's threads while training, then ours
    assert any(last_line in r.getMessage() for r in caplog.records), caplog.text
    assert out.version.version == 1
    assert out.checkpoint_path.startswith(f"{checkpoints}/{cfg.dataset.name}-")
    assert out.checkpoint_path.endswith("/checkpoint")
    assert storage.exists(storage.join(out.checkpoint_path, BEST))
    assert out.metrics["test"]["roc_auc"] > out.metrics["baseline"]["roc_auc"] + 0.15
    assert {h["workers"] for h in out.history} == {1}
    run = out.checkpoint_path.split("/")[-2]
    assert not Path(checkpoint.local_directory(run)).exists()  # moved, not copied


def test_a_run_failing_in_this_process_says_so_and_leaves_no_checkpoint_behind(
    make_cfg, monkeypatch
):
    """Local mode raises the loop's own error, and a run has no restart to resume from its
    local checkpoint: the failure is one TrainingFailed sentence naming train.num_workers=0 and
    the cause, the run's local checkpoint directory is removed and nothing is registered. The
    fault is injected at the second epoch's report, after a checkpoint was written."""
    cfg = make_cfg(
        "dataset.source.rows=2000",
        "train.num_workers=0",
        "train.epochs=3",
        "train.early_stopping_patience=0",
        "train.checkpoint_seconds=0",
    )
    data = prepare(cfg)
    report, runs = checkpoint._report_in_process, []

    def failing(metrics, files):
        runs.append(ray.train.get_context().get_experiment_name())
        if len(runs) == 2:
            assert Path(checkpoint.local_directory(runs[0])).is_dir()  # the first epoch's
            raise RuntimeError("the disk is on fire")
        report(metrics, files)

    monkeypatch.setattr(checkpoint, "_report_in_process", failing)
    with pytest.raises(TrainingFailed) as failed:
        train(cfg, data)
    message = str(failed.value)
    assert message.startswith(f"training {runs[0]} failed in this process: the disk is on fire")
    assert "train.num_workers=0" in message and "no version was registered" in message
    assert "\n" not in message
    assert not Path(checkpoint.local_directory(runs[0])).exists()
    assert Registry(cfg.paths.registry).versions(cfg.dataset.name) == []

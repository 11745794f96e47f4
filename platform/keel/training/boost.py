"""The loops each Ray Train worker runs for gradient-boosted trees (model.family xgboost or
lightgbm): shard -> arrays -> boosting rounds -> reports + checkpoints.

They keep the torch loop's contract (training/checkpoint.py): reports carry train and validation
loss every `model.trees.report_every` rounds, a checkpoint holds the model as it stands (to
resume after a failure, boosting on from it) and the best model so far (what gets registered),
and early stopping on the validation split never loses the best rounds. Validation loss is the
torch head's loss (log loss, cross-entropy, squared error of the scaled target), so a sweep or a
leaderboard ranks families on one scale.

Ray Train's XGBoostTrainer runs the loop inside XGBoost's collective when there are several
workers (histograms are all-reduced); LightGBM's workers get Ray Train's network parameters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from keel.config.schema import Task

from .checkpoint import (
    BEST,
    CURRENT,
    PROGRESS,
    new_progress,
    progress_file,
    report,
    restore,
    threads,
    workers,
)
from .shard import read_arrays

log = logging.getLogger(__name__)

# objective and the validation metric that equals the torch head's loss, per task
XGBOOST_TASKS = {
    Task.binary_classification: ("binary:logistic", "logloss"),
    Task.multiclass_classification: ("multi:softprob", "mlogloss"),
    Task.regression: ("reg:squarederror", "rmse"),  # squared below
}
LIGHTGBM_TASKS = {
    Task.binary_classification: ("binary", "binary_logloss"),
    Task.multiclass_classification: ("multiclass", "multi_logloss"),
    Task.regression: ("regression", "l2"),
}


class Rounds:
    """What both libraries' callbacks do after a round: track the best validation loss, stop
    after `early_stopping_rounds` without a better one, and report every `report_every` rounds
    (with a checkpoint when `train.checkpoint_seconds` have passed, and always at the end)."""

    def __init__(self, config: dict[str, Any], rows: int, progress: dict, best: bytes | None):
        trees = config["model"]["trees"]
        self.rounds, self.every = trees["rounds"], trees["report_every"]
        self.patience = trees["early_stopping_rounds"]
        self.checkpoint_seconds = config["train"]["checkpoint_seconds"]
        self.rows, self.progress, self.best = rows, progress, best
        self.best_round = progress.get("best_round", -1)
        self.chunk_started = time.perf_counter()
        self.chunk_rounds = 0
        self.last_checkpoint = time.monotonic()

    def after(self, done: int, train_loss: float, val_loss: float, model, dump) -> bool:
        """Round `done` (0-based, counted over restarts) finished with these losses; `dump(model,
        rounds)` saves the first `rounds` rounds (all when None). True: stop boosting."""
        p = self.progress
        self.chunk_rounds += 1
        if val_loss < p["best_val_loss"] - 1e-7 or self.best_round < 0:
            p.update(best_val_loss=min(val_loss, p["best_val_loss"]), bad_epochs=0)
            self.best_round, self.best = done, None  # the best is dumped when a report needs it
        else:
            p["bad_epochs"] += 1
        p.update(epoch=done, best_round=self.best_round)
        stop = bool(self.patience) and p["bad_epochs"] >= self.patience
        final = stop or done == self.rounds - 1
        if not (final or (done + 1) % self.every == 0):
            return stop
        seconds = time.perf_counter() - self.chunk_started
        metrics = {
            "epoch": done,
            "epochs": self.rounds,
            "unit": "round",
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": p["best_val_loss"],
            "samples_per_s": self.rows * self.chunk_rounds / seconds if seconds else 0.0,
            "train_seconds": seconds,
            "resumed_from": p["resumed_from"],
            "workers": workers(),
            "stopped_early": stop,
        }
        p["history"].append(metrics)
        if final or time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds:
            if self.best is None:
                self.best = dump(model, self.best_round + 1)
            files = {CURRENT: dump(model, None), BEST: self.best, PROGRESS: progress_file(p)}
            report(metrics, lambda: files)
            self.last_checkpoint = time.monotonic()
        else:
            report(metrics)
        self.chunk_started, self.chunk_rounds = time.perf_counter(), 0
        return stop


def _start(config: dict[str, Any]):
    """The worker's data, progress and what it resumes from."""
    import ray.train

    width = config["in_features"]
    x, y = read_arrays(ray.train.get_dataset_shard("train"), width)
    vx, vy = read_arrays(ray.train.get_dataset_shard("val"), width)
    resumed = restore()
    files, progress = resumed or ({}, new_progress())
    return (x, y), (vx, vy), files, progress


def _gpu() -> bool:
    import ray

    return bool(ray.get_gpu_ids())


def xgboost_params(config: dict[str, Any], gpu: bool) -> dict[str, Any]:
    trees, head = config["model"]["trees"], config["head"]
    objective, metric = XGBOOST_TASKS[Task(head["task"])]
    params = {
        "objective": objective,
        "eval_metric": metric,
        "eta": trees["learning_rate"],
        "max_depth": trees["max_depth"],
        "max_leaves": trees["num_leaves"] if trees["max_depth"] == 0 else 0,
        "min_child_weight": trees["min_child_weight"],
        "subsample": trees["subsample"],
        "colsample_bytree": trees["colsample"],
        "lambda": trees["reg_lambda"],
        "alpha": trees["reg_alpha"],
        "tree_method": "hist",
        "device": "cuda" if gpu else "cpu",
        "nthread": threads(config),
        "seed": config["train"]["seed"],
        "verbosity": 0,
    }
    if objective == "multi:softprob":
        params["num_class"] = len(head["labels"])
    return params


def _xgboost_dump(model, rounds: int | None) -> bytes:
    return bytes((model if rounds is None else model[:rounds]).save_raw("ubj"))


def xgboost_loop(config: dict[str, Any]) -> None:
    import xgboost as xgb

    (x, y), (vx, vy), files, progress = _start(config)
    params = xgboost_params(config, _gpu())
    dtrain = xgb.DMatrix(x, label=y, nthread=params["nthread"])
    dval = xgb.DMatrix(vx, label=vy, nthread=params["nthread"])
    resumed = None
    if CURRENT in files:
        resumed = xgb.Booster(model_file=bytearray(files[CURRENT]))
    square = Task(config["head"]["task"]) == Task.regression
    metric = params["eval_metric"]
    rounds = Rounds(config, len(y), progress, files.get(BEST))
    offset = progress["epoch"] + 1

    class Callback(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            losses = [evals_log[name][metric][-1] for name in ("train", "val")]
            train_loss, val_loss = (v * v if square else v for v in losses)
            return rounds.after(offset + epoch, train_loss, val_loss, model, _xgboost_dump)

    if offset >= rounds.rounds:
        return
    xgb.train(
        params,
        dtrain,
        num_boost_round=rounds.rounds - offset,
        evals=[(dtrain, "train"), (dval, "val")],
        xgb_model=resumed,
        callbacks=[Callback()],
        verbose_eval=False,
    )


def lightgbm_params(config: dict[str, Any]) -> dict[str, Any]:
    import ray.train

    trees, head = config["model"]["trees"], config["head"]
    objective, metric = LIGHTGBM_TASKS[Task(head["task"])]
    params = {
        "objective": objective,
        "metric": metric,
        "learning_rate": trees["learning_rate"],
        "max_depth": trees["max_depth"] or -1,
        "num_leaves": trees["num_leaves"],
        "min_sum_hessian_in_leaf": trees["min_child_weight"],
        "bagging_fraction": trees["subsample"],
        "bagging_freq": 1 if trees["subsample"] < 1 else 0,
        "feature_fraction": trees["colsample"],
        "lambda_l2": trees["reg_lambda"],
        "lambda_l1": trees["reg_alpha"],
        "num_threads": threads(config),
        "seed": config["train"]["seed"],
        "deterministic": True,
        "verbosity": -1,
    }
    if objective == "multiclass":
        params["num_class"] = len(head["labels"])
    if ray.train.get_context().get_world_size() > 1:
        # Ray Train's LightGBM backend found each worker a port; data-parallel tree learning
        params.update(ray.train.lightgbm.get_network_params(), tree_learner="data")
        params["pre_partition"] = True
    return params


def _lightgbm_dump(model, rounds: int | None) -> bytes:
    return model.model_to_string(num_iteration=rounds or -1).encode()


def lightgbm_loop(config: dict[str, Any]) -> None:
    import lightgbm as lgb

    (x, y), (vx, vy), files, progress = _start(config)
    params = lightgbm_params(config)
    if _gpu():
        log.warning("the LightGBM wheel has no GPU build: training on the CPU")
    dtrain = lgb.Dataset(x, label=y, params={"verbosity": -1})
    dval = lgb.Dataset(vx, label=vy, reference=dtrain)
    resumed = None
    if CURRENT in files:
        resumed = lgb.Booster(model_str=files[CURRENT].decode())
    rounds = Rounds(config, len(y), progress, files.get(BEST))
    offset = progress["epoch"] + 1

    def callback(env) -> None:
        losses = {name: value for name, _, value, _ in env.evaluation_result_list}
        done = offset + env.iteration - env.begin_iteration
        if rounds.after(done, losses["train"], losses["val"], env.model, _lightgbm_dump):
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    if offset >= rounds.rounds:
        return
    lgb.train(
        params,
        dtrain,
        num_boost_round=rounds.rounds - offset,
        valid_sets=[dtrain, dval],
        valid_names=["train", "val"],
        init_model=resumed,
        callbacks=[callback],
    )

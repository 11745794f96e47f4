"""`keel leaderboard`: every model config of `leaderboard.models` tried on the same prepared
split in one Ray Tune run under a time budget, each with its own small search space, then the
best trial of each model evaluated on the test split and the best of all registered.

Trials are ranked on validation loss, which every family reports on one scale (the task head's
loss: log loss, cross-entropy, squared error of the scaled target), so the choice never looks
at the test split; the test metrics are what the table shows. The registered version is a
candidate, promoted only through `slo.quality_floor` like any `keel train`.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from keel.config import KeelConfig, group_option, to_dict
from keel.config.schema import Family
from keel.durations import duration_seconds
from keel.errors import KeelError
from keel.models.family import family
from keel.storage import join, stamp, write_json

from .dataset import Prepared, prepare
from .evaluate import evaluate, latency_profile
from .run import Trained, from_checkpoint, register
from .sweep import (
    free_leaked_placement_groups,
    run_trial,
    search_space,
    trial_lines,
    trials_need_workers,
    with_params,
)

log = logging.getLogger(__name__)

MODEL = "leaderboard_model"  # the trial's model config name, in Tune's parameter space


@dataclass
class Entry:
    """A model config's best trial: how it did and what it costs."""

    model: str  # the model config (conf/model/NAME.yaml)
    family: Family
    trials: int  # its trials that reported before the budget ran out
    params: dict[str, Any]  # the best trial's draws from the model's space
    val_loss: float
    test: dict[str, float]
    baseline: dict[str, float]
    primary: str
    train_seconds: float  # the best trial's wall time
    latency: dict[str, Any]  # the latency profile (training.evaluate.latency_profile)
    size_bytes: int  # the saved model
    checkpoint: Any = field(repr=False)  # its last checkpoint, holding the best model

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "family": self.family.value,
            "trials": self.trials,
            "params": self.params,
            "val_loss": self.val_loss,
            "test": self.test,
            "baseline": self.baseline,
            "primary_metric": self.primary,
            "train_seconds": self.train_seconds,
            "latency": self.latency,
            "size_bytes": self.size_bytes,
        }


@dataclass
class Leaderboard:
    entries: list[Entry]  # best validation loss first
    missing: list[str]  # model configs with no finished trial within the budget
    registered: Trained
    results_path: str


def models(cfg: KeelConfig) -> dict[str, KeelConfig]:
    """Each model config of the leaderboard as a whole config: the experiment with that model."""
    out = {}
    for name in cfg.leaderboard.models:
        trial = copy.deepcopy(cfg)
        trial.model = group_option("model", name)
        out[name] = trial
    return out


def _param(model: str, path: str) -> str:
    return f"{model}/{path}"


def _trial(params: dict[str, Any], configs: dict[str, KeelConfig], data: Prepared) -> None:
    """One Tune trial: the drawn model config with its own space's draws."""
    name = params[MODEL]
    own = {path: params[_param(name, path)] for path in _space(configs[name], name)}
    run_trial(with_params(configs[name], own), data)


def _space(cfg: KeelConfig, name: str) -> dict[str, Any]:
    return cfg.leaderboard.spaces.get(name) or {}


def leaderboard(cfg: KeelConfig, data: Prepared | None = None) -> Leaderboard:
    from ray import tune
    from ray.train import Checkpoint
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
    from ray.util import placement_group_table

    lb = cfg.leaderboard
    configs = models(cfg)  # config errors before any data is read
    trials_need_workers(cfg, "a leaderboard")
    data = data or prepare(cfg)
    space: dict[str, Any] = {MODEL: tune.grid_search(list(configs))}
    for name in configs:
        drawn = search_space(_space(cfg, name))
        space.update({_param(name, path): domain for path, domain in drawn.items()})
    budget = duration_seconds(lb.budget)
    name = f"{cfg.dataset.name}-leaderboard-{stamp()}"
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_trial, configs=configs, data=data),
            {"CPU": cfg.sweep.cpus_per_trial},
        ),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="best_val_loss",
            mode="min",
            num_samples=lb.trials_per_model,  # rounds of the grid over the models
            max_concurrent_trials=cfg.sweep.concurrency,
            time_budget_s=budget,
        ),
        # quiet: a line per finished trial instead of Tune's status table
        run_config=tune.RunConfig(
            name=name,
            storage_path=cfg.paths.checkpoints,
            verbose=0,
            callbacks=[trial_lines(lambda config: config[MODEL], "best_val_loss")],
        ),
    )
    log.info(
        "leaderboard %s: %s, %d trial(s) each, %d at a time, budget %s",
        name,
        ", ".join(configs),
        lb.trials_per_model,
        cfg.sweep.concurrency,
        lb.budget,
    )
    before = set(placement_group_table())
    try:
        grid = tuner.fit()
    finally:
        free_leaked_placement_groups(before)

    finished: dict[str, list] = {n: [] for n in configs}
    for result in grid:
        metrics = result.metrics or {}
        if result.config and CHECKPOINT_PATH_KEY in metrics:
            finished[result.config[MODEL]].append(result)
    entries = [
        _entry(configs[n], n, runs, data, Checkpoint(_best(runs).metrics[CHECKPOINT_PATH_KEY]))
        for n, runs in finished.items()
        if runs
    ]
    missing = [n for n, runs in finished.items() if not runs]
    if not entries:
        raise KeelError(
            f"no trial finished within leaderboard.budget={lb.budget}: raise it, or try fewer "
            f"models (leaderboard.models) or trials (leaderboard.trials_per_model)"
        )
    entries.sort(key=lambda e: e.val_loss)
    best = entries[0]
    best_cfg = with_params(configs[best.model], best.params)
    trained = register(best_cfg, data, *from_checkpoint(best_cfg, best.checkpoint))
    path = join(cfg.paths.reports, cfg.dataset.name, "leaderboard", name, "leaderboard.json")
    write_json(
        path,
        {
            "budget": lb.budget,
            "entries": [e.to_json() for e in entries],
            "missing": missing,
            "registered": {"model": best.model, "version": trained.version.version},
        },
    )
    return Leaderboard(entries, missing, trained, path)


def _best(runs: list) -> Any:
    return min(runs, key=lambda r: r.metrics["best_val_loss"])


def _entry(cfg: KeelConfig, name: str, runs: list, data: Prepared, checkpoint) -> Entry:
    """Evaluate a model config's best trial on the test split and profile its latency."""
    best_run = _best(runs)
    params = {p: best_run.config[_param(name, p)] for p in _space(cfg, name)}
    cfg = with_params(cfg, params)
    best, _, where = from_checkpoint(cfg, checkpoint)
    fam = family(cfg.model.family)
    in_features = len(data.features.output_columns)
    fitted = fam.load(to_dict(cfg.model), in_features, data.head, best, where, "cpu")
    predict = functools.partial(fam.predict, fitted, data.head)
    metrics = evaluate(predict, data.head, data.datasets["test"], cfg.dataset, data.y_train)
    return Entry(
        model=name,
        family=fam.name,
        trials=len(runs),
        params=params,
        val_loss=float(best_run.metrics["best_val_loss"]),
        test=metrics["test"],
        baseline=metrics["baseline"],
        primary=metrics["primary_metric"],
        train_seconds=float(best_run.metrics.get("time_total_s", 0.0)),
        latency=latency_profile(predict, data.features, data.sample_rows),
        size_bytes=len(fam.save(fitted)),
        checkpoint=checkpoint,
    )

"""Hyperparameter sweeps with Ray Tune over the sweep config's search space.

Train V2 cannot be handed to a Tuner directly: each trial is a small driver function that
runs a TorchTrainer and forwards its per-epoch metrics with TuneReportCallback, so ASHA can
stop poor trials early. The data is prepared once and shared by every trial; the best
trial's own weights (its last checkpoint's best.pt) are then evaluated and registered like
any `keel train`, with no second training run.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from ray.util import placement_group_table

from keel.config import KeelConfig
from keel.config.schema import Distribution, Family
from keel.errors import ConfigError
from keel.storage import join, stamp, write_text

from .dataset import Prepared, prepare
from .plan import plan
from .run import Trained, from_checkpoint, register
from .trainer import trainer

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    table: Any  # pandas DataFrame: one row per trial, best first
    best_params: dict[str, Any]
    trained: Trained
    results_path: str


def search_space(space: dict[str, dict]) -> dict[str, Any]:
    """`{"train.lr": {"loguniform": [1e-4, 1e-1]}}` -> Tune domains keyed by config path."""
    from ray import tune

    make = {
        Distribution.loguniform: lambda a: tune.loguniform(*a),
        Distribution.uniform: lambda a: tune.uniform(*a),
        Distribution.randint: lambda a: tune.randint(*a),
        Distribution.choice: tune.choice,
        Distribution.grid: tune.grid_search,
    }
    return {
        path: make[Distribution(name)](args)
        for path, dist in space.items()
        for name, args in dist.items()
    }


def with_params(cfg: KeelConfig, params: dict[str, Any]) -> KeelConfig:
    """A copy of cfg with each dotted config path set to its sampled value."""
    out = copy.deepcopy(cfg)
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = getattr(node, part) if is_dataclass(node) else node[part]
        if is_dataclass(node) and leaf in {f.name for f in fields(node)}:
            setattr(node, leaf, value)
        else:
            node[leaf] = value
    return out


# Ray Train's controller poll for runs inside a trial (Ray Train reads it from the process that
# calls fit(), here the trial's, and passes it on). conf/ray/local.yaml sets 0.05 s for every
# run; with 0.05, one 2-trial sweep in ~20 (in a notebook of the suite) had a trial whose Train
# run had finished hang for 10 minutes, between Ray Train's report callback and Tune; none was
# seen at 0.2 s. Trials keep 0.2 s until that is understood.
TRIAL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}


def horizon(cfg: KeelConfig, rows: int) -> int:
    """ASHA's time axis, the reports' "epoch": epochs for torch, boosting rounds for trees."""
    if cfg.model.family == Family.torch:
        return plan(cfg.train, rows).epochs
    return cfg.model.trees.rounds


def trials_need_workers(cfg: KeelConfig, what: str) -> None:
    """Tune trials are Ray Train runs whose epochs reach Tune through Ray Train's report
    callback, which local mode (train.num_workers=0) never calls: ASHA would see no epoch and
    the table no metric."""
    if cfg.train.num_workers == 0:
        raise ConfigError(
            f"{what}'s trials are Ray Train runs that report each epoch to Tune, and "
            "train.num_workers=0 (training in this process) has no such reports: set "
            f"train.num_workers=1 or more for {what}"
        )


def _trial(params: dict[str, Any], cfg: KeelConfig, data: Prepared) -> None:
    """One Tune trial: a whole Ray Train run with these parameters."""
    run_trial(with_params(cfg, params), data)


def run_trial(trial_cfg: KeelConfig, data: Prepared) -> None:
    """Inside a Tune trial: a Ray Train run of this config, its reports forwarded to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    os.environ.update(TRIAL_ENV)
    # Tune may stop a trial after any report, and the best trial's last checkpoint is what gets
    # registered: every report has one, so the registered model matches the reported metric.
    trial_cfg.train.checkpoint_seconds = 0
    datasets = {"train": data.datasets["train"], "val": data.datasets["val"]}
    in_features = len(data.features.output_columns)
    name = f"{trial_cfg.dataset.name}-trial-{tune.get_context().get_trial_id()}"
    trainer(trial_cfg, datasets, in_features, data.head, name, [TuneReportCallback()]).fit()


def sweep(cfg: KeelConfig, data: Prepared | None = None) -> SweepResult:
    """Tune cfg.sweep.space (on `data` when given, as prepared for cfg.dataset), then train
    and register the best trial's config."""
    from ray import tune
    from ray.train import Checkpoint
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = cfg.sweep
    trials_need_workers(cfg, "a sweep")
    data = data or prepare(cfg)
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",
            max_t=horizon(cfg, data.datasets["train"].count()),
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
        if s.scheduler == "asha"
        else FIFOScheduler()
    )
    callbacks = []
    if cfg.tracking.mode.value != "disabled":
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(WandbLoggerCallback(project=cfg.tracking.project, group=cfg.dataset.name))
    name = f"{cfg.dataset.name}-sweep-{stamp()}"
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_trial, cfg=cfg, data=data), {"CPU": s.cpus_per_trial}
        ),
        param_space=search_space(s.space),
        tune_config=tune.TuneConfig(
            metric=s.metric,
            mode=s.mode.value,
            num_samples=s.samples,
            max_concurrent_trials=s.concurrency,
            scheduler=scheduler,
        ),
        # quiet: a line per finished trial instead of Tune's status table
        run_config=tune.RunConfig(
            name=name,
            storage_path=cfg.paths.checkpoints,
            verbose=0,
            callbacks=[*callbacks, trial_lines(functools.partial(_drawn, s.space), s.metric)],
        ),
    )
    log.info("sweep %s: %d trials, %d at a time, %s", name, s.samples, s.concurrency, s.scheduler)
    before = set(placement_group_table())
    try:
        grid = tuner.fit()
    finally:
        free_leaked_placement_groups(before)
    if grid.num_errors:
        log.warning(
            "%d of %d trials failed; see %s", grid.num_errors, len(grid), grid.experiment_path
        )
    # The table ranks trials by the best metric each reached, and a trial's registered weights
    # are its best epoch's (best.pt in its last checkpoint): pick the trial the same way, not by
    # its last epoch's metric, or the registered version is not the table's winner.
    best = grid.get_best_result(scope="all")
    table = _table(grid, s.space, s.metric, s.mode)
    results_path = join(cfg.paths.reports, cfg.dataset.name, "sweeps", name, "results.csv")
    write_text(results_path, table.to_csv(index=False))
    best_params = {k: best.config[k] for k in s.space}
    log.info("best trial: %s = %s with %s", s.metric, best.metrics.get(s.metric), best_params)
    best_cfg = with_params(cfg, best_params)
    checkpoint = Checkpoint(best.metrics[CHECKPOINT_PATH_KEY])
    trained = register(best_cfg, data, *from_checkpoint(best_cfg, checkpoint))
    return SweepResult(table, best_params, trained, results_path)


def _drawn(space: dict, config: dict) -> str:
    """A trial's draws, as `path=value` pairs."""
    return ", ".join(
        f"{path}={config[path]:.4g}"
        if isinstance(config[path], float)
        else f"{path}={config[path]}"
        for path in space
    )


def trial_lines(label: Callable[[dict], str], metric: str) -> Any:
    """A Tune callback logging a line per finished trial: `label` names the trial from its
    config, `metric` is the figure shown from its last result."""
    from ray import tune

    class Lines(tune.Callback):
        done = 0

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            result = trial.last_result or {}
            self.done += 1
            log.info(
                "trial %d/%d: %s, %s %.4f after %.0f s",
                self.done,
                len(trials),
                label(trial.config),
                metric,
                result.get(metric, float("nan")),
                result.get("time_total_s", 0.0),
            )

    return Lines()


def free_leaked_placement_groups(before: set[str]) -> None:
    """Release what stopped trials left reserved (ray-project/ray#54305).

    Under Tune, a Train V2 run whose trial ASHA stops keeps its placement group for the rest
    of the driver's life; in a notebook or a long session that starves later Ray Data work.
    Once the sweep is over, every placement group it created is finished with.
    """
    from ray._raylet import PlacementGroupID
    from ray.util import remove_placement_group
    from ray.util.placement_group import PlacementGroup

    for pg_id, info in placement_group_table().items():
        if pg_id not in before and info["state"] in ("CREATED", "PENDING", "RESCHEDULING"):
            log.info("releasing placement group %s left by a stopped trial", pg_id)
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))


def _table(grid, space: dict, metric: str, mode: str):
    frame = grid.get_dataframe(filter_metric=metric, filter_mode=mode)
    keep = ["trial_id", *[f"config/{k}" for k in space], metric, "epoch", "best_val_loss"]
    frame = frame[[c for c in keep if c in frame.columns]].rename(
        columns={f"config/{k}": k for k in space} | {"epoch": "last_epoch"}
    )
    return frame.sort_values(metric, ascending=mode == "min").reset_index(drop=True)

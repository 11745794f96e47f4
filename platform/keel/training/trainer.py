"""A Ray Train (V2) trainer from the train config: scaling, failures, checkpoints. The model
family names the trainer class and the loop each worker runs (keel.models.family)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from keel.config import KeelConfig, to_dict
from keel.config.schema import Family
from keel.models import Head
from keel.models.family import family
from keel.runtime import worker_env

from .plan import Plan, plan

log = logging.getLogger(__name__)


def use_gpu(setting: str) -> bool:
    """`auto` uses GPUs when the cluster has any; `true` insists (Ray waits for one)."""
    import ray

    setting = str(setting).lower()
    if setting == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return setting == "true"


def loop_config(cfg: KeelConfig, in_features: int, head: Head, plan: Plan) -> dict[str, Any]:
    """The plain dict each worker receives."""
    return {
        "model": to_dict(cfg.model),
        "train": to_dict(cfg.train),
        "plan": plan.to_dict(),
        "in_features": in_features,
        "head": head.to_state(),
    }


# One worker has no peer to talk to: Ray Train's base trainer runs the same loop without the
# family's backend, whose set-up is all for peers (TorchTrainer's config class imports torch in
# the controller and opens a gloo process group; XGBoost's starts a tracker, LightGBM's finds
# ports). A 1-worker fit of 3,000 churn rows took 9.1 s instead of 10.7 s here (torch), 8.0 s
# instead of 8.5 s (XGBoost).
ONE_WORKER_TRAINER = "ray.train.v2.api.data_parallel_trainer.DataParallelTrainer"


def trainer_class(trainer: str, num_workers: int) -> str:
    """The family's trainer for several workers, the base trainer for one."""
    return trainer if num_workers > 1 else ONE_WORKER_TRAINER


def split_datasets(num_workers: int) -> list[str]:
    """The training split is sharded across workers; one worker reads it whole, without the
    split coordinator actor a shard needs (a process start, ~5 s here, before the first batch)."""
    return ["train"] if num_workers > 1 else []


def workers(num_workers: int, gpu: bool, cpus: float) -> str:
    """Where a run trains, as its first log line says it."""
    if num_workers == 0:
        return "in this process (train.num_workers=0: Ray Train's local mode, no restarts)"
    return f"{num_workers} worker(s), gpu={gpu}, {cpus} CPU each"


def rounds(cfg: KeelConfig, schedule: Plan) -> str:
    """What a tree family's run will do, as `Plan.describe` says it for torch."""
    trees = cfg.model.trees
    stop = trees.early_stopping_rounds
    until = f"early stop after {stop} without a better val_loss" if stop else "no early stop"
    return f"up to {trees.rounds} boosting rounds ({until}; {schedule.rows:,} rows per worker)"


def resolve(dotted: str) -> Any:
    """The object a dotted path names ("package.module.name")."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def trainer(
    cfg: KeelConfig,
    datasets: dict,
    in_features: int,
    head: Head,
    name: str,
    extra_callbacks: list | None = None,
):
    import ray.train

    fam = family(cfg.model.family)
    gpu = use_gpu(cfg.train.use_gpu)
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if gpu else {})}
    scaling = ray.train.ScalingConfig(
        num_workers=cfg.train.num_workers,
        use_gpu=gpu,
        resources_per_worker=resources,
        placement_strategy=cfg.train.placement_strategy.value,
    )
    run = ray.train.RunConfig(
        name=name,
        storage_path=cfg.paths.checkpoints,
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.checkpoints_to_keep),
        worker_runtime_env={"env_vars": worker_env(cfg)},
        callbacks=extra_callbacks or None,
    )
    schedule = plan(cfg.train, datasets["train"].count())
    log.info(
        "training %s: %s; %s",
        name,
        workers(cfg.train.num_workers, gpu, cfg.train.cpus_per_worker),
        schedule.describe() if fam.name == Family.torch else rounds(cfg, schedule),
    )
    return resolve(trainer_class(fam.trainer, cfg.train.num_workers))(
        resolve(fam.worker_loop),
        train_loop_config=loop_config(cfg, in_features, head, schedule),
        scaling_config=scaling,
        run_config=run,
        datasets=datasets,
        dataset_config=ray.train.DataConfig(
            datasets_to_split=split_datasets(cfg.train.num_workers)
        ),
    )

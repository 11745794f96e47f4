"""Experiment tracking with wandb: offline by default (`wandb sync` uploads later), disabled
in tests. One run per training: config, per-epoch metrics, test metrics, slices, version."""

from __future__ import annotations

import os
from typing import Any

from keel.config import KeelConfig, to_dict


def wandb_dir(cfg: KeelConfig) -> str | None:
    """Local runs go under paths.root; remote roots leave wandb's default (./wandb)."""
    if "://" in cfg.paths.root:
        return None
    os.makedirs(cfg.paths.root, exist_ok=True)
    return cfg.paths.root


def log_trained(cfg: KeelConfig, trained: Any) -> str | None:
    """Log a registered training (training.run.Trained: a run, a sweep's or a leaderboard's
    best); returns the local run directory (None when disabled)."""
    return log_training(
        cfg,
        to_dict(cfg),
        trained.history,
        trained.metrics,
        trained.version.version,
        trained.promoted,
    )


def log_training(
    cfg: KeelConfig, config: dict, history: list[dict], metrics: dict, version: int, promoted: bool
) -> str | None:
    """Log one training run; returns the local run directory (None when disabled)."""
    import wandb

    mode = os.environ.get("WANDB_MODE", cfg.tracking.mode.value)
    run = wandb.init(
        project=cfg.tracking.project,
        entity=cfg.tracking.entity,
        mode=mode,
        dir=wandb_dir(cfg),
        config=config,
        job_type="train",
        name=f"{cfg.dataset.name}-v{version}",
        tags=[cfg.dataset.name],
        settings=wandb.Settings(silent=True),
    )
    try:
        for row in history:
            run.log({k: v for k, v in row.items() if _number(v)}, step=int(row["epoch"]))
        run.summary.update({f"test/{k}": v for k, v in metrics["test"].items()})
        run.summary.update({f"baseline/{k}": v for k, v in metrics["baseline"].items()})
        run.summary.update({"registry/version": version, "registry/promoted": promoted})
        run.log({"slices": _slice_table(wandb, metrics["slices"])})
        return None if mode == "disabled" else os.path.dirname(run.dir)  # what wandb sync takes
    finally:
        run.finish()


def described(run_dir: str | None) -> list[tuple[str, str]]:
    """A job summary's row naming the logged run; none when tracking was disabled."""
    return [("wandb run", f"{run_dir} (upload later: wandb sync)")] if run_dir else []


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _slice_table(wandb, slices: dict) -> Any:
    rows, columns = [], ["column", "value", "rows"]
    names = sorted({k for vals in slices.values() for m in vals.values() for k in m if k != "rows"})
    for column, values in slices.items():
        for value, m in values.items():
            rows.append([column, value, m.get("rows"), *[m.get(n) for n in names]])
    return wandb.Table(columns=columns + names, data=rows)

"""Owns ray.init: an embedded local Ray by default, or a connection to a cluster address.

Jobs never call ray.init themselves; they call `ensure(cfg)`. Environment that workers need
(wandb mode, where the project lives) travels in the runtime_env so every node sees it.
"""

from __future__ import annotations

import logging
import os

from keel.config import KeelConfig, project_root
from keel.errors import ConfigError

log = logging.getLogger(__name__)

# Forwarded from the driver's environment to every Ray worker when set.
FORWARDED_ENV = ("WANDB_MODE", "WANDB_DIR", "WANDB_SILENT", "KEEL_PROJECT_ROOT")


def worker_env(cfg: KeelConfig) -> dict[str, str]:
    env = {"WANDB_MODE": cfg.tracking.mode.value, "KEEL_PROJECT_ROOT": str(project_root())}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    env.update(cfg.ray.env_vars)
    return env


def ensure(cfg: KeelConfig) -> None:
    """Start or connect to Ray once per process; later calls are no-ops."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env = worker_env(cfg)
    os.environ.update(env)
    common = dict(
        namespace=cfg.ray.namespace,
        runtime_env={"env_vars": env},
        logging_level=logging.WARNING,
        configure_logging=True,
    )
    # A Ray job's driver (keel retrain submitted by keel monitor --every) joins its cluster.
    address = cfg.ray.address or ("auto" if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ else None)
    if address:
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, **common)
    else:
        log.info("starting an embedded local Ray")
        os.environ.pop("RAY_ADDRESS", None)  # set below by an earlier start in this process
        ray.init(
            address="local",  # never a cluster `ray start` left on this machine
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            include_dashboard=cfg.ray.include_dashboard,
            **common,
        )
    # Tools started from this process (Ray's state API, Train's cleanup actors) must find this
    # cluster, not another Ray on the same machine.
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    configure_data(cfg)


def configure_data(cfg: KeelConfig) -> None:
    """Apply ray.data_context (declared per environment in conf/ray/) to Ray Data."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.ray.progress_bars
    ctx.print_on_execution_start = False
    for key, value in cfg.ray.data_context.items():
        if not hasattr(ctx, key):
            raise ConfigError(f"ray.data_context.{key}: Ray Data has no setting '{key}'")
        setattr(ctx, key, value)

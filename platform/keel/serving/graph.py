"""The Serve application built from config: one ModelServer deployment per served model behind
one Ingress. `build_app` is the import path a Serve config file names (`keel deploy`)."""

from __future__ import annotations

import os
from typing import Any

from ray.serve import Application

from keel.config import KeelConfig, from_dict
from keel.errors import ConfigError
from keel.registry import Registry
from keel.registry.bundle import Stored

from . import autoscale
from .ingress import Ingress
from .model_server import ModelServer
from .settings import ServeSettings

# A log line per request costs throughput and drowns the job's output; keel logs predictions.
QUIET = {"enable_access_log": False, "log_level": "WARNING"}


def model_options(cfg: KeelConfig, registry: Registry) -> dict[str, dict[str, Any]]:
    """Per model: replica resources and autoscaling derived from the SLO and latency profile.

    Resolving every version here makes a missing model or version fail before anything starts.
    """
    if not cfg.serve.models:
        raise ConfigError("serve.models is empty: name at least one registry model to serve")
    out = {}
    for model, served in cfg.serve.models.items():
        profile = Stored.get(registry, model, served.version).latency()
        actor = _actor(cfg)
        if cfg.serve.replica_gpus:
            actor["num_gpus"] = cfg.serve.replica_gpus
        out[model] = {
            "name": f"model-{model}",
            "ray_actor_options": actor,
            "logging_config": QUIET,
            **autoscale.derive(cfg.serve, cfg.slo, profile),
        }
    return out


def ingress_options(cfg: KeelConfig, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fused, the ingress replica runs every model: it scales like the slowest of them."""
    actor = _actor(cfg)
    env = cfg.serve.auth_token_env
    if env and os.environ.get(env):  # the token travels to the replica, never into a file
        actor.setdefault("runtime_env", {"env_vars": {}})["env_vars"][env] = os.environ[env]
    options: dict[str, Any] = {"name": "Ingress", "logging_config": QUIET}
    if not cfg.serve.fused:
        return {
            **options,
            "ray_actor_options": actor,
            "num_replicas": cfg.serve.ingress_replicas,
            "max_ongoing_requests": 256,
        }
    if cfg.serve.replica_gpus:
        actor["num_gpus"] = cfg.serve.replica_gpus
    slowest = min(models.values(), key=lambda o: o["autoscaling_config"]["target_ongoing_requests"])
    return {
        **options,
        "ray_actor_options": actor,
        "autoscaling_config": slowest["autoscaling_config"],
        "max_ongoing_requests": slowest["max_ongoing_requests"],
    }


def _actor(cfg: KeelConfig) -> dict[str, Any]:
    """A replica's resources, and the ray.env_vars its job lacks: replicas get them even when
    this process's Ray was started with another config (a notebook's, a test session's). Only
    then: an actor with a runtime env of its own took 1.4 CPU-s to start here, 0.65 without."""
    actor: dict[str, Any] = {"num_cpus": cfg.serve.replica_cpus}
    if missing := _missing_env(cfg):
        actor["runtime_env"] = {"env_vars": missing}
    return actor


def _missing_env(cfg: KeelConfig) -> dict[str, str]:
    """ray.env_vars that this process's job does not already give its actors."""
    import ray

    job = ray.get_runtime_context().runtime_env if ray.is_initialized() else {}
    given = job.get("env_vars") or {}
    return {k: v for k, v in cfg.ray.env_vars.items() if given.get(k) != v}


def deployments(cfg: KeelConfig, registry: Registry) -> list[dict[str, Any]]:
    """Every deployment of the application with its Serve options, the ingress last."""
    models = model_options(cfg, registry)
    ingress = ingress_options(cfg, models)
    return [ingress] if cfg.serve.fused else [*models.values(), ingress]


def application(cfg: KeelConfig) -> Application:
    options = {o["name"]: o for o in deployments(cfg, Registry(cfg.paths.registry))}
    shared = ServeSettings.from_config(cfg)
    servers = {
        model: ModelServer.options(**options[f"model-{model}"]).bind(runner)
        for model, runner in shared.runners.items()
        if not cfg.serve.fused
    }
    return Ingress.options(**options["Ingress"]).bind(servers, shared)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's app builder: `args` holds {"config": <the resolved keel config as a dict>}."""
    return application(from_dict(args["config"]))

"""The Serve application as a Ray Serve config file: what `serve deploy` applies on a cluster.

The file names keel's app builder and carries the resolved keel config as its args, so the
cluster builds the same graph `keel serve` runs. Replica sizing is spelled out per deployment
so an operator can read and edit it there. The file is checked against the schema `serve
deploy` uses before it is written, and never holds a secret.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from keel import runtime, storage
from keel.config import KeelConfig, to_dict
from keel.errors import ConfigError
from keel.registry import Registry

from .graph import deployments

IMPORT_PATH = "keel.serving.graph:build_app"
DEPLOY_COMMAND = "serve deploy {path} --address http://HEAD:8265"
RUN_COMMAND = "serve run {path}"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class DeployFile:
    """What `keel deploy` wrote: the file and, per model, the versions it serves right now."""

    path: str
    versions: dict[str, str]


def path(cfg: KeelConfig) -> str:
    return storage.join(cfg.paths.root, "deploy", "serve.yaml")


def serve_config(cfg: KeelConfig, registry: Registry) -> dict[str, Any]:
    """The ServeDeploySchema document for cfg.serve, validated.

    Resolves each model's served version first, so a missing model fails with a
    RegistryError.
    """
    listed = deployments(cfg, registry)
    # The replicas' own env is for an app started from this process: the file's application
    # carries ray.env_vars for all of them, and the ingress's would hand the auth token's
    # value over, which a file must not carry. Nodes set the variable themselves (header()).
    for listing in listed:
        listing["ray_actor_options"].pop("runtime_env", None)
    config = {
        "proxy_location": cfg.serve.proxy_location.value,
        "http_options": {"host": cfg.serve.host, "port": cfg.serve.port},
        "applications": [
            {
                "name": cfg.serve.app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "runtime_env": {"env_vars": runtime.cluster_env(cfg)},
                "deployments": listed,
                "args": {"config": to_dict(cfg)},
            }
        ],
    }
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    """Fail here rather than on the cluster. The schema accepts any dict as an
    autoscaling_config, so each one is also checked as Serve will check it at deploy time."""
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as e:
        raise ConfigError(f"the Serve config would be rejected by `serve deploy`:\n{e}") from None
    for app in config["applications"]:
        for d in app["deployments"]:
            if not d.get("autoscaling_config"):
                continue
            try:
                AutoscalingConfig.model_validate(d["autoscaling_config"])
            except ValidationError as e:
                raise ConfigError(
                    f"deployment {d['name']}: invalid autoscaling_config (check serve.autoscaling "
                    f"and serve.max_replicas):\n{e}"
                ) from None


def header(cfg: KeelConfig) -> str:
    """How to use the file and what a cluster needs, as YAML comments."""
    notes = [
        f"Ray Serve config for the keel application '{cfg.serve.app_name}' (`keel deploy`).",
        f"  on a cluster:     {DEPLOY_COMMAND.format(path='serve.yaml')}",
        f"  on this machine:  {RUN_COMMAND.format(path='serve.yaml')}",
        "A cluster needs keel installed on every node (import_path below), and every node must "
        f"reach the registry {cfg.paths.registry} and the logs {cfg.paths.logs} (write the "
        "file with a shared paths.root such as s3://bucket/keel).",
        "Replica sizing under `deployments:` overrides the code's and may be edited here; a "
        "deployment takes autoscaling_config or num_replicas, never both.",
    ]
    if cfg.serve.host in LOOPBACK:
        notes.append(
            f"http_options.host {cfg.serve.host} accepts connections from its own node only: "
            "for a cluster, write the file with serve.host=0.0.0.0."
        )
    if env := cfg.serve.auth_token_env:
        notes.append(
            f"Auth: set {env} (the bearer token) in the environment of every Ray node, e.g. "
            "before `ray start`; the token is never written to this file."
        )
    wrap = textwrap.TextWrapper(
        width=92, initial_indent="# ", subsequent_indent="# ", break_long_words=False
    )
    return "".join(f"{line}\n" for note in notes for line in wrap.wrap(note))


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-dicts out in full: anchors and aliases would puzzle an operator."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(cfg: KeelConfig, config: dict[str, Any]) -> str:
    body = yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return f"{header(cfg)}\n{body}"


def served_versions(cfg: KeelConfig, registry: Registry) -> dict[str, str]:
    """Per model, the refs its replicas load (primary, canary, shadow) and the versions they
    resolve to now: a missing canary or shadow version fails here, not on the cluster."""
    out = {}
    for model, served in cfg.serve.models.items():
        refs = [("", served.version)]
        if served.canary.percent > 0:
            refs.append((f"canary {served.canary.percent:g}% ", served.canary.version))
        if served.shadow:
            refs.append(("shadow ", served.shadow))
        out[model] = ", ".join(
            role + _describe(ref, registry.get(model, ref).version) for role, ref in refs
        )
    return out


def _describe(ref: str, version: int) -> str:
    return f"v{version}" if str(ref).lstrip("vV").isdigit() else f"{ref} (v{version})"


def write(cfg: KeelConfig) -> DeployFile:
    """Build, validate and write the file atomically; nothing is written if any check fails."""
    registry = Registry(cfg.paths.registry)
    config = serve_config(cfg, registry)
    versions = served_versions(cfg, registry)
    target = path(cfg)
    storage.write_text(target, render(cfg, config))
    return DeployFile(target, versions)

"""Load a keel config from Python: notebooks, tests, jobs and Ray workers all come through here.

Composition uses Hydra's compose API (config groups, the override grammar, the schemas in the
ConfigStore). Every failure becomes a ConfigError that names the key path, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from keel.errors import ConfigError

from .check import problems
from .schema import KeelConfig, ServedModel, register

ROOT_CONFIG = "config"  # the config tree's root (ROOT_CONFIG + .yaml), which lists the defaults
CONFIG_DIR = "KEEL_CONFIG_DIR"  # the env var naming a config tree (`keel --config-dir DIR` sets it)


def project_root() -> Path:
    """The directory outputs and relative paths hang from, usually holding conf/:
    $KEEL_PROJECT_ROOT, else this checkout, else the working directory (a job submitted to a
    cluster runs in its project copy, with the package shipped beside it)."""
    env = os.environ.get("KEEL_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "conf").is_dir() else Path.cwd()


def conf_dir() -> Path:
    """The config tree: $KEEL_CONFIG_DIR when set (a team's own configs, keel installed as a
    package), else the project root's conf/."""
    env = os.environ.get(CONFIG_DIR)
    return Path(env).expanduser().resolve() if env else project_root() / "conf"


def compose_raw(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config before keel's own checks (still interpolated)."""
    register()
    where = conf_dir()
    if not (where / f"{ROOT_CONFIG}.yaml").is_file():
        raise ConfigError(
            f"no keel config at {where} (it needs {ROOT_CONFIG}.yaml and the groups): "
            f"run keel in a project holding conf/, or point {CONFIG_DIR} (or `keel "
            "--config-dir DIR`) at one; `keel init FILE --target COL` starts from keel's own"
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(where), version_base="1.3"):
            return compose(config_name=ROOT_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(_explain(e)) from None
    finally:
        GlobalHydra.instance().clear()


def load(overrides: Sequence[str] = ()) -> KeelConfig:
    """Compose, resolve and check the config; relative local paths become absolute (under the
    project root)."""
    raw = compose_raw(overrides)
    unknown = set(raw) - {f.name for f in fields(KeelConfig)}
    if unknown:
        raise ConfigError(f"invalid config: unknown top-level key(s): {', '.join(sorted(unknown))}")
    try:
        cfg: KeelConfig = OmegaConf.to_object(raw)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None
    _own_model(cfg)
    _check(cfg)
    _absolute_paths(cfg)
    return cfg


def group_option(group: str, option: str) -> Any:
    """One option of a config group (conf/GROUP/OPTION.yaml) as its typed section, composed
    apart from the rest: what `keel leaderboard` tries beside the configured model."""
    raw = compose_raw([f"{group}={option}"])
    try:
        return OmegaConf.to_object(raw[group])
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None


def _own_model(cfg: KeelConfig) -> None:
    # An experiment that lists no served models serves its own: `keel serve experiment=X`
    # needs no serve config of its own, and post-processing defaults to the task's.
    if not cfg.serve.models:
        cfg.serve.models = {cfg.dataset.name: ServedModel()}


def _check(cfg: KeelConfig) -> None:
    found = problems(cfg)
    if found:
        lines = "\n".join(f"  {path}: {msg}" for path, msg in found)
        raise ConfigError(f"invalid config ({len(found)} problem(s)):\n{lines}")


def to_yaml(cfg: KeelConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Any) -> dict:
    """A plain, JSON-serializable dict of a config (or any config section) for Ray and wandb."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def _absolute_paths(cfg: KeelConfig) -> None:
    # Ray workers, notebooks (notebooks/) and a shell in a subdirectory run elsewhere: a
    # relative path means the same file under the project root for all of them.
    for f in fields(cfg.paths):
        setattr(cfg.paths, f.name, absolute(getattr(cfg.paths, f.name)))
    if cfg.dataset.source.path:
        cfg.dataset.source.path = absolute(cfg.dataset.source.path)


def absolute(path: str) -> str:
    return path if "://" in path else str((project_root() / Path(path).expanduser()).resolve())


_INTERNAL = re.compile(r"\s*(full_key|reference_type|object_type)[=:]")


def _explain(e: Exception) -> str:
    """One readable line from Hydra/OmegaConf errors, with the full key path when known."""
    cause = e
    while cause.__cause__ is not None and isinstance(
        cause.__cause__, HydraException | OmegaConfBaseException
    ):
        cause = cause.__cause__
    msg = str(getattr(cause, "msg", None) or cause).strip().splitlines()
    key = getattr(cause, "full_key", None)
    head = msg[0] if msg else type(cause).__name__
    text = f"{key}: {head}" if key and key not in head else head
    extra = [line for line in msg[1:] if line.strip() and not _INTERNAL.match(line)]
    hint = "\n".join(extra[:3])
    context = str(e).splitlines()[0] if cause is not e else ""
    parts = [f"invalid config: {text}"]
    if context and context not in text:
        parts.append(f"  ({context})")
    if hint:
        parts.append(hint)
    if _NEW_ENTRY.search(head):
        parts.append(_NEW_ENTRY_HINT)
    return "\n".join(parts)


# OmegaConf builds a new key of a typed map (serve.models.NAME) from the command line as a plain
# dict, which the map refuses: the cure is a config file, not another spelling of the override.
_NEW_ENTRY = re.compile(r"Invalid type assigned: dict is not a subclass of \w+")
_NEW_ENTRY_HINT = (
    "  a command line can change an entry that is listed (serve.models.churn.version=2) but "
    "not add one: list it in a config file (conf/serve/NAME.yaml, then serve=NAME), or serve an "
    "experiment's own model with experiment=NAME"
)


def from_dict(config: dict) -> KeelConfig:
    """A typed config from a resolved plain dict (what `to_dict` gives, e.g. in a Serve config
    file's application args), checked like a composed one."""
    try:
        cfg: KeelConfig = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(KeelConfig), config)
        )
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None
    _check(cfg)
    return cfg

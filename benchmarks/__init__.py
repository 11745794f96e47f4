"""Benchmarks of keel against what a user would otherwise write, on identical inputs.

Each benchmark is a module here with `run(cfg, ray_times) -> Summary`, and a conf/bench/NAME.yaml
whose `name` picks the module. Modules load on demand: they import scikit-learn (a dev extra).

This package sits beside keel in the repository, not inside it: a Serve replica or a Train
worker never ships it. Run it from the repository root (`python -m benchmarks bench=NAME|all`,
`make bench`): the Ray workers it starts find its tasks' functions (common._touch,
features._identity) through the driver's working directory, which Ray puts on their path, and
bare_server runs as `python -m benchmarks.bare_server` from the same directory.
"""

from __future__ import annotations

from importlib import import_module

from keel.app import Summary
from keel.config import KeelConfig, conf_dir
from keel.errors import ConfigError, KeelError

from .common import Phases

BENCHMARKS = {  # name -> module
    "autoscale": "benchmarks.autoscale",
    "features": "benchmarks.features",
    "monitor": "benchmarks.monitor",
    "serve": "benchmarks.serve",
    "train": "benchmarks.train",
    "trees": "benchmarks.trees",
}


def names() -> list[str]:
    """The benchmark configs in conf/bench, but `all` (which runs every one of them)."""
    return sorted(p.stem for p in (conf_dir() / "bench").glob("*.yaml") if p.stem != "all")


def run(cfg: KeelConfig, ray_times: Phases) -> Summary:
    if cfg.bench.name not in BENCHMARKS:
        raise ConfigError(f"bench.name: unknown benchmark '{cfg.bench.name}'; known: {names()}")
    try:
        module = import_module(BENCHMARKS[cfg.bench.name])
    except ModuleNotFoundError as e:
        raise KeelError(f"the benchmarks need {e.name}: pip install -e '.[dev]'") from None
    return module.run(cfg, ray_times)

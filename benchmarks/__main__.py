"""Benchmark keel against hand-written baselines on the same data: bench=features|train|all.

`python -m benchmarks bench=NAME` from the repository root (`make bench` runs bench=all).
`bench=all` runs every conf/bench/*.yaml but all.yaml in turn, in this one process, so Ray
starts once; other overrides (bench.rows=..., features.batch_size=...) apply to each. Ray's
start-up is timed and reported apart from the benchmarks. Results print as a table and are
written to {paths.reports}/bench/NAME-STAMP.json.
"""

import re

from keel.app import Summary, command_line, main
from keel.config import KeelConfig, load
from keel.errors import ConfigError

from . import names, run
from .common import start_ray

CHOICE = re.compile(r"^\+*bench=")


def benchmark(cfg: KeelConfig, overrides: list[str]) -> Summary:
    if cfg.bench is None:
        raise ConfigError(f"choose a benchmark: bench=NAME with NAME in {names()}, or all")
    if cfg.bench.name != "all":
        return run(cfg, start_ray(cfg))
    rest = [o for o in overrides if not CHOICE.match(o)]
    configs = [load([*rest, f"bench={name}"]) for name in names()]
    ray_times = start_ray(cfg)
    summary = Summary(f"bench all: {', '.join(c.bench.name for c in configs)}")
    for c in configs:
        summary.rows += [(f"{c.bench.name}: {k}", v) for k, v in run(c, ray_times).rows]
    return summary


if __name__ == "__main__":
    _, overrides = command_line(__name__)
    main(lambda cfg: benchmark(cfg, overrides), overrides)

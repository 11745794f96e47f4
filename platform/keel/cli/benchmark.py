"""Benchmark keel against hand-written baselines on the same data: bench=features|train|all.

`bench=all` runs every conf/bench/*.yaml but all.yaml in turn, in this one process, so Ray
starts once; other overrides (bench.rows=..., features.batch_size=...) apply to each. Ray's
start-up is timed and reported apart from the benchmarks. Results print as a table and are
written to {paths.reports}/bench/NAME-STAMP.json.
"""

import re
import sys

from keel import bench
from keel.app import Summary, main
from keel.bench.common import start_ray
from keel.config import KeelConfig, load
from keel.errors import ConfigError

GROUPS = "bench dataset features model train serve monitor paths ray"  # the config groups it reads

CHOICE = re.compile(r"^\+*bench=")


def benchmark(cfg: KeelConfig, overrides: list[str]) -> Summary:
    if cfg.bench is None:
        raise ConfigError(f"choose a benchmark: bench=NAME with NAME in {bench.names()}, or all")
    if cfg.bench.name != "all":
        return bench.run(cfg, start_ray(cfg))
    rest = [o for o in overrides if not CHOICE.match(o)]
    configs = [load([*rest, f"bench={name}"]) for name in bench.names()]
    ray_times = start_ray(cfg)
    summary = Summary(f"bench all: {', '.join(c.bench.name for c in configs)}")
    for c in configs:
        summary.rows += [(f"{c.bench.name}: {k}", v) for k, v in bench.run(c, ray_times).rows]
    return summary


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(lambda cfg: benchmark(cfg, sys.argv[1:]))


if __name__ == "__main__":
    command()

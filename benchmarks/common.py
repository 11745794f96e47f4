"""What every benchmark shares: one Ray start, cached input files, interleaved timing, reports.

Ray start-up and worker warm-up are timed once per process and reported on their own, so the
benchmarks themselves measure steady-state work. Sides run interleaved (a, b, a, b, ...) and are
summarized by medians, because a small shared machine is noisy and drifts over minutes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pyarrow.parquet as pq

from keel import runtime
from keel.config import KeelConfig
from keel.config.schema import DatasetConfig, PathsConfig
from keel.data import synthetic
from keel.storage import exists, join, resolve, stamp, write_json

log = logging.getLogger(__name__)

DONE = "_COMPLETE"  # written last: a cache directory without it is incomplete and regenerated
Phases = dict[str, float]  # phase -> seconds of one run


def start_ray(cfg: KeelConfig) -> Phases:
    """Start Ray (timed), silence Ray Data's progress bars, then warm every worker up (timed)."""
    import ray

    started = time.perf_counter()
    runtime.ensure(cfg)
    startup = time.perf_counter() - started
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # bars redraw from the driver and skew short timings
    ctx.enable_operator_progress_bars = False
    started = time.perf_counter()
    cpus = cpus_of_ray()
    ray.data.range(4 * cpus, override_num_blocks=2 * cpus).map_batches(_touch).materialize()
    warmup = time.perf_counter() - started
    log.info("Ray up in %.1f s, %d worker(s) warmed up in %.1f s", startup, cpus, warmup)
    return {"ray_startup_s": startup, "ray_warmup_s": warmup}


def cpus_of_ray() -> int:
    """The CPUs of the Ray keel runs on: what a baseline may use to be fair to it."""
    import ray

    return max(int(ray.cluster_resources().get("CPU", 1)), 1)


def _touch(batch: dict) -> dict:
    """Import what keel's tasks import, so the first timed task does not pay for it."""
    import keel.features  # noqa: F401

    return batch


# Ray Data settings that decide how files become tasks; every report records them.
READ_SETTINGS = ("use_datasource_v2", "read_op_min_num_blocks", "target_max_block_size")


def read_settings() -> dict[str, Any]:
    """The effective settings (set from ray.data_context by keel.runtime)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    return {k: getattr(ctx, k) for k in READ_SETTINGS}


def bench_dataset(cfg: KeelConfig) -> DatasetConfig:
    """The configured dataset at the benchmark's size, without planted invalid rows."""
    src = dataclasses.replace(cfg.dataset.source, rows=cfg.bench.rows, invalid_fraction=0.0)
    return dataclasses.replace(cfg.dataset, source=src)


def cached_files(cfg: KeelConfig) -> str:
    """Directory of parquet files with the benchmark's rows, generated on first use only."""
    ds = bench_dataset(cfg)
    uri = join(cfg.paths.data, "bench", f"{ds.name}-{ds.source.rows}-seed{ds.source.seed}")
    if exists(join(uri, DONE)):
        log.info("reusing cached %s rows in %s", f"{ds.source.rows:,}", uri)
        return uri
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)
    chunks = synthetic.chunk_count(ds)
    log.info("generating %s %s rows into %s (once)", f"{ds.source.rows:,}", ds.name, uri)
    for c in range(chunks):
        pq.write_table(
            synthetic.generate_chunk(ds, c), f"{path}/part-{c:05d}.parquet", filesystem=fs
        )
        if (c + 1) % 10 == 0 or c + 1 == chunks:
            log.info("  %d/%d files written", c + 1, chunks)
    write_json(join(uri, DONE), {"rows": ds.source.rows, "files": chunks})
    return uri


def interleave(sides: dict[str, Callable[[], Phases]], repeats: int) -> dict[str, list[Phases]]:
    """Run each side once per round, in order, for `repeats` rounds."""
    runs: dict[str, list[Phases]] = {name: [] for name in sides}
    for r in range(repeats):
        for name, run in sides.items():
            log.info("round %d/%d: %s ...", r + 1, repeats, name)
            runs[name].append(run())
            log.info("round %d/%d: %s %s", r + 1, repeats, name, _fmt(runs[name][-1]))
    return runs


def medians(runs: list[Phases]) -> Phases:
    return {phase: statistics.median(run[phase] for run in runs) for phase in runs[0]}


def rates(rows: int, seconds: Phases) -> Phases:
    """Rows per second of each phase."""
    return {phase: rows / s if s > 0 else float("inf") for phase, s in seconds.items()}


def environment() -> dict[str, Any]:
    """Where the numbers were measured: enough to tell two reports' machines apart."""
    packages = ("ray", "pandas", "pyarrow", "numpy", "scikit-learn")
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": {p: _version(p) for p in packages},
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def write_report(cfg: KeelConfig, result: dict[str, Any]) -> str:
    uri = join(cfg.paths.reports, "bench", f"{cfg.bench.name}-{stamp()}.json")
    write_json(uri, {"bench": cfg.bench.name, "environment": environment(), **result})
    return uri


def _fmt(phases: Phases) -> str:
    # no unit: a phase is seconds, but a side may also report a rate or a loss
    return ", ".join(f"{k} {v:,.2f}" for k, v in phases.items())


def paths_under(root: str) -> PathsConfig:
    """Every output path under one root: a bench's registry, logs and reports stay its own."""
    names = [f.name for f in dataclasses.fields(PathsConfig) if f.name != "root"]
    return PathsConfig(root=root, **{n: join(root, n) for n in names})

"""The monitoring benchmark: `keel monitor` vs a plain Evidently DataDriftPreset on the same
sample.

Set-up, not timed, in a temporary directory: a small model is trained into its own registry,
`bench.rows` rows of generated traffic with a covariate shift planted on the `covariate` columns
are predicted by that version (Predictor, as a replica predicts) and written as one day of its
prediction log: `files` parquet files with the schema ParquetLog writes, written by
prediction_log.write as ParquetLog's are (the log's layout and file names are its).

Timed, interleaved: keel is `keel.monitoring.monitor.run`: it reads the window's predictions
(every answered row, narrow), draws whole log files until they hold twice
monitor.current_sample rows, samples monitor.current_sample rows of them, computes each column's
drift with keel's engine (Evidently's methods and verdicts, without an Evidently Report), the
per-column statistics and histograms and the prediction's drift, and writes its HTML page, JSON
and verdict. The baseline is what a user would write without keel: read the same files into
pandas (the monitored inputs and the prediction), draw a uniform sample of the same size
(`monitor.current_sample` rows, one line: `DataFrame.sample`), run `Report([DataDriftPreset()])`
against the same reference (the version's stored reference) with an explicit DataDefinition of
the same column kinds, and save Evidently's HTML. (Before 2026-12 it ran on every row, so the
ratio measured keel's sampling rather than keel.) Both sides let Evidently's rules pick the
drift method per column; their drifted columns are reported next to the planted ones. What
differs besides speed: keel's page is its own static HTML, not Evidently's interactive one
(`monitor.evidently_report=true` adds that, at about the baseline's cost), and keel's sample
comes from whole files rather than from every row.

Then growth: the day's files are copied `growth.copies` times (the same rows under new names,
so the same drift) and keel alone runs again; its median over its median before is the growth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import tempfile
import time
import uuid
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from keel import prediction_log as plog
from keel import storage
from keel.app import Summary
from keel.config import KeelConfig
from keel.config.schema import ColumnType
from keel.data import synthetic
from keel.errors import ConfigError
from keel.models import score
from keel.monitoring import monitor
from keel.monitoring.drift import KIND, NUMERICAL, PREDICTION
from keel.monitoring.report import drift_results
from keel.registry import Registry
from keel.registry.bundle import File
from keel.serving.predictor import Predictor
from keel.training.run import train

from . import common

log = logging.getLogger(__name__)

PARAMS = ("covariate", "files", "train", "target", "growth")  # bench.params, in monitor.yaml
SIDES = ("keel", "baseline")


@dataclasses.dataclass
class Logged:
    """What set-up leaves for both sides: one day of a version's prediction log."""

    served: monitor.Served  # the version's monitored columns and reference
    directory: str  # the version's prediction log (predictions_dir), one day partition in it
    rows: int
    files: int


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    p = cfg.bench.params
    if missing := [k for k in PARAMS if k not in p]:
        raise ConfigError(f"bench.params: missing {missing} (see conf/bench/monitor.yaml)")
    with tempfile.TemporaryDirectory(prefix="keel-bench-monitor-") as root:
        work = dataclasses.replace(cfg, paths=common.paths_under(root))
        logged = log_traffic(work, train_model(work, p["train"]), dict(p["covariate"]), p["files"])
        drifted: dict[str, dict[str, Any]] = {}  # side -> drift of its latest run
        runs = common.interleave(
            {
                "keel": lambda: run_keel(work, drifted),
                "baseline": lambda: run_baseline(work, logged, drifted),
            },
            cfg.bench.repeats,
        )
        grown = grow(logged, p["growth"]["copies"])
        at_scale = [run_keel(work, {})["total_s"] for _ in range(cfg.bench.repeats)]
    planted = sorted(p["covariate"])
    totals = {side: [r["total_s"] for r in runs[side]] for side in SIDES}
    best = {side: min(t) for side, t in totals.items()}
    median = {side: statistics.median(t) for side, t in totals.items()}
    ratio = median["baseline"] / median["keel"]
    best_ratio = best["baseline"] / best["keel"]
    same = drifted["keel"]["columns"] == drifted["baseline"]["columns"]
    growth = statistics.median(at_scale) / median["keel"]
    ok = (
        ratio >= p["target"]
        and same
        and drifted["keel"]["columns"] == planted
        and growth <= p["growth"]["target"]
    )
    report = common.write_report(
        cfg,
        {
            "rows": logged.rows,
            "files": logged.files,
            "params": p,
            "current_sample": cfg.monitor.current_sample,
            "reference_rows": len(logged.served.reference),
            **ray_times,
            "runs": runs,
            "best_s": best,
            "median_s": median,
            "ratio_baseline_over_keel": ratio,
            "ratio_of_best": best_ratio,
            "grown_rows": grown,
            "keel_at_grown_rows_s": at_scale,
            "growth": growth,
            "evidently": metadata.version("evidently"),
            "planted": planted,
            "drifted": drifted,
            "pass": ok,
        },
    )
    s = Summary(
        f"bench monitor: {logged.rows:,} logged predictions x {len(logged.served.columns)} "
        f"monitored inputs in {logged.files} files, {cfg.bench.repeats} interleaved run(s)"
    )
    for side in SIDES:
        d = drifted[side]
        s.add(
            side,
            f"median {median[side]:6.1f} s, best {best[side]:6.1f} s; drifted: "
            f"{', '.join(d['columns']) or 'none'} (prediction drifted: {d['prediction']})",
        )
    s.add("phases (median)", _phases(runs))
    s.add(
        "baseline / keel",
        f"{ratio:.2f}x on medians ({best_ratio:.2f}x on bests), target >= {p['target']}x; "
        f"drifted columns "
        f"{'match' if same else 'differ'}, planted {', '.join(planted)}: "
        f"{'PASS' if ok else 'FAIL'}",
    )
    s.add(
        f"keel at {grown:,} rows",
        f"median {statistics.median(at_scale):.1f} s: {growth:.2f}x its time at "
        f"{logged.rows:,} rows, target <= {p['growth']['target']}x (the day's files copied "
        f"{p['growth']['copies']} times: the same rows, so the same drift; what grows is the "
        f"log)",
    )
    s.add(
        "notes",
        f"both sides sample monitor.current_sample={cfg.monitor.current_sample:,} of the "
        f"{logged.rows:,} rows (keel from whole files drawn first); both against "
        f"{len(logged.served.reference):,} reference rows; keel adds per-column statistics, the "
        "prediction's drift and JSON, and writes its own page instead of Evidently's",
    )
    return s.add("report", report)


def _phases(runs: dict[str, list[common.Phases]]) -> str:
    return "; ".join(
        f"{side}: " + ", ".join(f"{k} {v:.1f} s" for k, v in common.medians(r).items())
        for side, r in runs.items()
    )


# ----------------------------------------------------------------------------- set-up


def train_model(cfg: KeelConfig, p: dict[str, Any]) -> int:
    """A small version of the configured model, production in a registry of its own."""
    src = dataclasses.replace(cfg.dataset.source, rows=p["rows"])
    small = dataclasses.replace(
        cfg,
        dataset=dataclasses.replace(cfg.dataset, source=src),
        train=dataclasses.replace(
            cfg.train, epochs=p["epochs"], cpus_per_worker=p["cpus_per_worker"]
        ),
        slo=dataclasses.replace(cfg.slo, quality_floor={}),  # what is monitored, not how good
    )
    log.info("training %s on %s rows (not timed) ...", cfg.dataset.name, f"{p['rows']:,}")
    trained = train(small)
    return trained.version.version


def log_traffic(cfg: KeelConfig, version: int, covariate: dict[str, float], files: int) -> Logged:
    """`bench.rows` shifted rows, predicted by the version, as one day of its prediction log."""
    base = common.bench_dataset(cfg)
    src = base.source
    traffic = dataclasses.replace(
        base,
        source=dataclasses.replace(
            src,
            seed=src.seed + 1,  # not the training rows
            chunk_rows=-(-src.rows // files),
            drift=dataclasses.replace(src.drift, covariate=covariate),
        ),
    )
    registry = Registry(cfg.paths.registry)
    predictor = Predictor.load(registry, traffic.name, version)
    schema = plog.prediction_schema(predictor.request_columns)
    directory = plog.predictions_dir(cfg.paths.logs, traffic.name)
    chunks = synthetic.chunk_count(traffic)
    log.info("logging %s predictions in %d files (not timed) ...", f"{src.rows:,}", chunks)
    for c in range(chunks):
        rows = synthetic.generate_chunk(traffic, c)
        raw = predictor.predict(rows)
        fixed = {"model": traffic.name, "version": version, "variant": "primary"}
        table = log_table(rows, schema, fixed, score(raw), predictor.post.rows(raw))
        plog.write(directory, table, f"{storage.stamp()}-bench-{c + 1:06d}")
    served = monitor.Served.load(registry, registry.get(traffic.name, version))
    return Logged(served, directory, src.rows, chunks)


def log_table(
    rows: pa.Table,
    schema: pa.Schema,
    fixed: dict[str, Any],
    prediction: np.ndarray,
    outputs: list[dict[str, Any]],
) -> pa.Table:
    """The rows ParquetLog writes for these requests, built column-wise (appending a million
    dicts would take minutes): fixed fields, then each input cast to its logged type
    (timestamps as arrow renders them; a client sends its own text, and they are unmonitored)."""
    n = rows.num_rows
    values = {
        **{k: [v] * n for k, v in fixed.items()},
        "request_id": [uuid.uuid4().hex for _ in range(n)],
        "ts": [plog.now()] * n,
        "latency_ms": np.full(n, 5.0),
        "prediction": prediction,
        plog.PROBABILITIES: [None] * n,  # a binary model logs none
        "output": [json.dumps(o) for o in outputs],
    }
    inputs = {plog.logged_name(c): rows[c].combine_chunks() for c in rows.column_names}
    arrays = [
        inputs[f.name].cast(f.type) if f.name in inputs else pa.array(values[f.name], f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def grow(logged: Logged, copies: int) -> int:
    """The day's log files copied `copies` - 1 more times under new names: `copies` times the
    rows in the window. Returns the rows it now holds."""
    fs, path = storage.resolve(logged.directory)
    selector = pafs.FileSelector(path, recursive=True)  # the files in its day partition
    originals = [i.path for i in fs.get_file_info(selector) if i.is_file]
    for copy in range(1, copies):
        for original in originals:
            fs.copy_file(original, original.replace(".parquet", f"-copy{copy}.parquet"))
    return logged.rows * copies


# ----------------------------------------------------------------------------- the two sides


def run_keel(cfg: KeelConfig, drifted: dict[str, dict[str, Any]]) -> common.Phases:
    started = time.perf_counter()
    m = monitor.run(cfg)
    total = time.perf_counter() - started
    check = m.verdict.drift
    drifted["keel"] = {"columns": check.drifted_columns, "prediction": check.prediction.drifted}
    return {"total_s": total}


def run_baseline(
    cfg: KeelConfig, logged: Logged, drifted: dict[str, dict[str, Any]]
) -> common.Phases:
    served = logged.served
    kinds = {c: KIND[ColumnType(s.type)] for c, s in served.columns.items()}
    names = {plog.logged_name(c): c for c in kinds}
    started = time.perf_counter()
    current = pd.read_parquet(logged.directory, columns=[*names, PREDICTION])
    current = current.rename(columns=names)
    current = current.sample(n=min(cfg.monitor.current_sample, len(current)), random_state=cfg.seed)
    reference = pd.read_parquet(served.version.uri(File.reference), columns=[*kinds, PREDICTION])
    read = time.perf_counter()
    definition = DataDefinition(
        numerical_columns=[*(c for c, k in kinds.items() if k == NUMERICAL), PREDICTION],
        categorical_columns=[c for c, k in kinds.items() if k != NUMERICAL],
    )
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    columns = drift_results(snapshot.dict())
    report = time.perf_counter()
    snapshot.save_html(f"{cfg.paths.root}/baseline-{storage.stamp()}.html")  # a local temp dir
    done = time.perf_counter()
    prediction = columns.pop(PREDICTION)
    drifted["baseline"] = {
        "columns": sorted(c for c, r in columns.items() if r.drifted),
        "prediction": prediction.drifted,
    }
    return {
        "read_s": read - started,
        "drift_s": report - read,
        "html_s": done - report,
        "total_s": done - started,
    }

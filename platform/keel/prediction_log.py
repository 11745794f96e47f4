"""The serving logs, the contract between serving and monitoring (docs/architecture.md).

Parquet files, partitioned by UTC day:
- `<logs>/predictions/model=<m>/date=<d>/`: one row per served instance (inputs, prediction);
- `<logs>/requests/model=<m>/date=<d>/`: one row per predict request, refused ones included
  (status, reason, latency): what the SLO checks count;
- `<logs>/feedback/date=<d>/`: ground-truth labels by request id;
- `<logs>/explanations/model=<m>/date=<d>/`: one row per explained instance, by request id
  (what is explained, base value, output, an attribution per input column as JSON).

This module owns their schemas, directories and file names (`write`) and reads them (`read`,
`read_sample`). Serve replicas write them through a spool (`keel.serving.spool`), so an
acknowledged row is never lost nor written twice; monitoring reads them. Neither imports the
other.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from keel import storage
from keel.config.schema import ColumnSpec, ColumnType

log = logging.getLogger(__name__)

PREDICTIONS, REQUESTS, FEEDBACK = "predictions", "requests", "feedback"
EXPLANATIONS = "explanations"
_MODEL = "model="  # the partition of a model's log: model=<name>

_ARROW = {
    ColumnType.int: pa.int64(),
    ColumnType.float: pa.float64(),
    ColumnType.bool: pa.bool_(),
}

PROBABILITIES = "probabilities"  # every class's probability of a multiclass prediction
PREDICTION_FIELDS = [
    ("request_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("model", pa.string()),
    ("version", pa.int64()),
    ("variant", pa.string()),  # primary | canary | shadow
    ("latency_ms", pa.float64()),
    ("prediction", pa.float64()),  # P(positive), the value, or the top class probability
    # multiclass: one per class in the head's label order (what quality needs); else null.
    # Files written before the field existed lack the column: `read(fields=...)` gives nulls.
    (PROBABILITIES, pa.list_(pa.float64())),
    ("output", pa.string()),  # the post-processed output as JSON
]


class Operation(StrEnum):
    """What a logged request asked for (the request log's `operation`)."""

    predict = "predict"
    explain = "explain"  # :explain, or "explain": true in a predict body


# read from every request log file: null in those written before explanations (all predicts)
REQUEST_FIELDS = [("operation", pa.string())]
REQUEST_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("status", pa.int32()),  # the HTTP status answered
        ("reason", pa.string()),  # null when served; else e.g. invalid, malformed, too_large
        ("rows", pa.int64()),  # instances in the request (0 when it could not be read)
        ("latency_ms", pa.float64()),
        *REQUEST_FIELDS,  # Operation
    ]
)
EXPLANATION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),  # the prediction's, as its log row holds it
        ("ts", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("explained", pa.string()),  # what the attributions explain (keel.models.explain)
        ("base", pa.float64()),
        ("output", pa.float64()),
        ("attributions", pa.string()),  # {input column: attribution} as JSON
    ]
)
FEEDBACK_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("label", pa.string())]
)


_FIXED = {name for name, _ in PREDICTION_FIELDS} | {"date"}  # date: the partition key


def logged_name(column: str) -> str:
    """The log column of an input: its own name, or `input_<name>` when a fixed field has it."""
    return f"input_{column}" if column in _FIXED else column


def prediction_schema(columns: dict[str, ColumnSpec]) -> pa.Schema:
    """Fixed fields, then the raw inputs as typed columns."""
    inputs = [
        (logged_name(c), _ARROW.get(ColumnType(s.type), pa.string())) for c, s in columns.items()
    ]
    return pa.schema([*PREDICTION_FIELDS, *inputs])


def prediction_row(fixed: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """One log row: the fixed fields and the raw inputs, named as prediction_schema names them."""
    row = dict(fixed)
    for c, v in inputs.items():
        row[logged_name(c)] = v
    return row


def now() -> datetime:
    return datetime.now(timezone.utc)


def write(directory: str, table: pa.Table, name: str | None = None) -> list[str]:
    """Write rows as `<directory>/date=<d>/part-<name>.parquet`, a file per UTC day of `ts`
    (name: a fresh one by default). Writing a name again replaces its files."""
    name = name or f"{storage.stamp()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    days = pc.strftime(table["ts"], format="%Y-%m-%d")
    paths = []
    for day in sorted(pc.unique(days).to_pylist()):
        path = storage.join(directory, f"date={day}", f"part-{name}.parquet")
        part = table.filter(pc.equal(days, day))
        storage.write_bytes(path, storage.parquet_bytes(part))
        log.debug("wrote %d rows to %s", part.num_rows, path)
        paths.append(path)
    return paths


def predictions_dir(logs: str, model: str) -> str:
    return storage.join(logs, PREDICTIONS, f"{_MODEL}{model}")


def requests_dir(logs: str, model: str) -> str:
    return storage.join(logs, REQUESTS, f"{_MODEL}{model}")


def explanations_dir(logs: str, model: str) -> str:
    return storage.join(logs, EXPLANATIONS, f"{_MODEL}{model}")


def logged_models(logs: str) -> list[str]:
    """The models that have a prediction log under `logs` (their `predictions_dir`)."""
    names = (info.base_name for info in storage.list_dir(storage.join(logs, PREDICTIONS)))
    return sorted(n.removeprefix(_MODEL) for n in names if n.startswith(_MODEL))


def feedback_dir(logs: str) -> str:
    return storage.join(logs, FEEDBACK)


def read(
    directory: str,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: list[str] | None = None,
    fields: list[tuple[str, pa.DataType]] | None = None,
    where: pc.Expression | None = None,
) -> pa.Table:
    """Rows logged under a directory with start <= ts < end (bounds optional) for which `where`
    holds; an empty table when nothing was logged yet. Day partitions outside the bounds are
    not opened, and the filters run as the files are read (the columns they name need not be
    among `columns`).

    `fields` (e.g. PREDICTION_FIELDS) are read from every file, as nulls from files written
    before a field existed: a dataset takes its schema from one file, which may be such an old
    one, and would then drop the field from all of them."""
    scan = _scan(directory, start, end, fields, where)
    return pa.table({}) if scan is None else scan[0].to_table(columns=columns, filter=scan[1])


SAMPLE_FILES = 8  # a file sample spans at least this many files (or all): many points in time


def read_sample(
    directory: str,
    start: datetime | None,
    end: datetime | None,
    rows: int,
    seed: int,
    columns: list[str] | None = None,
    fields: list[tuple[str, pa.DataType]] | None = None,
    where: pc.Expression | None = None,
) -> pa.Table:
    """Rows as `read` gives them, from whole files drawn at random under `seed` until they hold
    twice `rows` rows that pass the filters in SAMPLE_FILES files at least, or from every file
    when there are no more.

    A parquet file decodes whole, so a uniform sample of rows costs as much as reading every
    row; drawing files first makes the cost follow `rows`, not the window (a 10M-row day reads
    what a 1M-row day reads). The log's files are each a flush of one replica, seconds to
    minutes of traffic, so the drawn files still spread over the window's time."""
    scan = _scan(directory, start, end, fields, where)
    if scan is None:
        return pa.table({})
    data, condition = scan
    files = list(data.get_fragments(filter=condition))  # the window's day partitions
    order = np.random.default_rng(seed).permutation(len(files))
    chosen, held, drawn = [], 0, 0
    for i in order:
        if held >= 2 * rows and len(chosen) >= SAMPLE_FILES:
            break
        drawn += 1
        # what the filters keep of it (another version's file keeps nothing): reads only
        # the filters' columns
        kept = files[i].scanner(schema=data.schema, columns=[], filter=condition).count_rows()
        if kept:
            chosen.append(files[i])
            held += kept
    if drawn == len(files):
        return data.to_table(columns=columns, filter=condition)
    parts = [f.to_table(schema=data.schema, columns=columns, filter=condition) for f in chosen]
    return pa.concat_tables(parts)


def _scan(
    directory: str,
    start: datetime | None,
    end: datetime | None,
    fields: list[tuple[str, pa.DataType]] | None,
    where: pc.Expression | None,
) -> tuple[pads.Dataset, pc.Expression | None] | None:
    """The logged files under a directory and the filter of the bounds and `where` (None: no
    directory yet)."""
    fs, path = storage.resolve(directory)
    if not storage.exists(directory):
        return None
    data = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    if not data.files:
        # a day's directory made for a file still being written under its hidden name: the
        # dataset has no schema yet, not even the partition column the bounds filter on
        return None
    if fields:
        data = data.replace_schema(pa.unify_schemas([data.schema, pa.schema(fields)]))
    for bound, keep in ((start, _at_or_after), (end, _before)):
        if bound is not None:
            clause = keep(bound)
            where = clause if where is None else where & clause
    return data, where


def _at_or_after(t: datetime) -> pc.Expression:
    return (pc.field("date") >= _day(t)) & (pc.field("ts") >= t)


def _before(t: datetime) -> pc.Expression:
    return (pc.field("date") <= _day(t)) & (pc.field("ts") < t)


def _day(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d")

"""The serving logs, the contract between serving and monitoring (DESIGN section 4).

Buffered rows written as parquet files, partitioned by UTC day:
- `<logs>/predictions/model=<m>/date=<d>/`: one row per served instance (inputs, prediction);
- `<logs>/requests/model=<m>/date=<d>/`: one row per predict request, refused ones included
  (status, reason, latency): what the SLO checks count;
- `<logs>/feedback/date=<d>/`: ground-truth labels by request id.

A row is appended before its request is acknowledged. Buffers flush by size, by age and on
shutdown; a failed write keeps its rows for the next flush, so nothing acknowledged is lost.
Serving writes these files and monitoring reads them; neither imports the other.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from keel import storage
from keel.config.schema import ColumnSpec, ColumnType

log = logging.getLogger(__name__)

PREDICTIONS, REQUESTS, FEEDBACK = "predictions", "requests", "feedback"

_ARROW = {
    ColumnType.int: pa.int64(),
    ColumnType.float: pa.float64(),
    ColumnType.bool: pa.bool_(),
}

PREDICTION_FIELDS = [
    ("request_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("model", pa.string()),
    ("version", pa.int64()),
    ("variant", pa.string()),  # primary | canary | shadow
    ("latency_ms", pa.float64()),
    ("prediction", pa.float64()),  # P(positive), the value, or the top class probability
    ("output", pa.string()),  # the post-processed output as JSON
]
REQUEST_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("status", pa.int32()),  # the HTTP status answered
        ("reason", pa.string()),  # null when served; else e.g. invalid, malformed, too_large
        ("rows", pa.int64()),  # instances in the request (0 when it could not be read)
        ("latency_ms", pa.float64()),
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


class ParquetLog:
    """Append rows; flush them to `<directory>/date=<d>/part-....parquet`."""

    def __init__(
        self, directory: str, schema: pa.Schema, flush_rows: int, flush_seconds: float
    ) -> None:
        self.directory, self.schema = directory, schema
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # unique across replicas
        self._rows: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._seq = 0
        self._lock = threading.Lock()  # flushes may run in a worker thread
        self.written_rows = 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_rows
        if full:
            try:
                self.flush()
            except Exception:  # the rows stay buffered; the next flush retries them
                log.exception(
                    "writing the %s log failed; %d rows kept", self.directory, self.pending
                )

    @property
    def pending(self) -> int:
        return len(self._rows)

    def due(self) -> bool:
        return bool(self._rows) and time.monotonic() - self._oldest >= self.flush_seconds

    def flush(self) -> list[str]:
        """Write the buffered rows, a file per day. Rows of a day whose write fails go back to
        the buffer (written days do not) and the error rises: nothing lost, nothing twice."""
        with self._lock:
            rows, self._rows = self._rows, []
            by_day: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                day = row["ts"].astimezone(timezone.utc).strftime("%Y-%m-%d")
                by_day.setdefault(day, []).append(row)
            paths = []
            for day, part in sorted(by_day.items()):
                try:
                    paths.append(self._write(day, part))
                except Exception:
                    self._rows = [r for d, p in sorted(by_day.items()) if d >= day for r in p]
                    raise
                self.written_rows += len(part)
            return paths

    def _write(self, day: str, rows: list[dict[str, Any]]) -> str:
        data = storage.parquet_bytes(pa.Table.from_pylist(rows, schema=self.schema))
        self._seq += 1
        name = f"part-{storage.stamp()}-{self.writer}-{self._seq:06d}.parquet"
        path = storage.join(self.directory, f"date={day}", name)
        storage.write_bytes(path, data)
        log.debug("wrote %d rows to %s", len(rows), path)
        return path


def predictions_dir(logs: str, model: str) -> str:
    return storage.join(logs, PREDICTIONS, f"model={model}")


def requests_dir(logs: str, model: str) -> str:
    return storage.join(logs, REQUESTS, f"model={model}")


def feedback_dir(logs: str) -> str:
    return storage.join(logs, FEEDBACK)


def read(
    directory: str,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows logged under a directory with start <= ts < end (bounds optional); an empty table
    when nothing was logged yet. Day partitions outside the bounds are not opened."""
    fs, path = storage.resolve(directory)
    if not storage.exists(directory):
        return pa.table({})
    data = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    where = None
    for bound, keep in ((start, _at_or_after), (end, _before)):
        if bound is not None:
            clause = keep(bound)
            where = clause if where is None else where & clause
    return data.to_table(columns=columns, filter=where)


def _at_or_after(t: datetime) -> pc.Expression:
    return (pc.field("date") >= _day(t)) & (pc.field("ts") >= t)


def _before(t: datetime) -> pc.Expression:
    return (pc.field("date") <= _day(t)) & (pc.field("ts") < t)


def _day(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d")

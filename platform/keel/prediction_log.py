"""The serving logs, the contract between serving and monitoring (docs/architecture.md).

Buffered rows written as parquet files, partitioned by UTC day:
- `<logs>/predictions/model=<m>/date=<d>/`: one row per served instance (inputs, prediction);
- `<logs>/requests/model=<m>/date=<d>/`: one row per predict request, refused ones included
  (status, reason, latency): what the SLO checks count;
- `<logs>/feedback/date=<d>/`: ground-truth labels by request id.

A row is appended, to a local spool that outlives its process, before its request is
acknowledged. Spooled rows are written by size, by age and on shutdown; a failed write keeps its
rows for the next flush and a killed replica's rows are written by its successor, so nothing
acknowledged is lost and nothing is written twice. Serving writes these files and monitoring
reads them; neither imports the other.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import numpy as np
import psutil
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


def default_spool() -> str:
    """Where a machine's serving replicas spool rows unless serve.log.spool says otherwise."""
    return os.path.join(tempfile.gettempdir(), f"keel-spool-{os.getuid()}")


# A spool segment is named <stem>.<owner>.arrows: the stem (<stamp>-<writer>-<seq>) names the
# parquet files it becomes, the owner (a writer id, <pid>-<hex>) is the process writing it.
SEGMENT_NAME = re.compile(
    r"(?P<stem>(?P<stamp>\d{8}-\d{6}-\d{3})-[\w-]+)\.(?P<pid>\d+)-[0-9a-f]+\.arrows"
)


def _segment_name(stem: str, owner: str) -> str:
    return f"{stem}.{owner}.arrows"


class ParquetLog:
    """Append rows; flush them to `<directory>/date=<d>/part-<segment>.parquet`.

    Each append reaches a local spool segment (an Arrow IPC stream under `spool`) before it
    returns, so an acknowledged row survives the death of its process (not of its machine).
    Appends never write to the log itself: a flush (run when `due`) closes the open segment,
    writes each closed one as parquet under names derived from the segment and then deletes it.
    Writing a segment twice replaces its files, so a failed or interrupted flush is retried
    without duplicates, and a new log adopts the segments of writers that died (`adopt`).
    """

    def __init__(
        self, directory: str, schema: pa.Schema, flush_rows: int, flush_seconds: float, spool: str
    ) -> None:
        self.directory, self.schema = directory, schema
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.spool = os.path.join(spool, hashlib.sha256(directory.encode()).hexdigest()[:16])
        self.writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # unique across replicas
        self._open: _Segment | None = None
        self._closed: list[str] = []  # segment files waiting for their parquet write
        self._seq = 0
        self._oldest = 0.0
        self._lock = threading.Lock()  # appends (event loop) against rotation (flush thread)
        self._flushing = threading.Lock()  # one flush at a time; appends do not wait for it
        self.pending = 0  # rows appended and not yet written to the log
        self.written_rows = 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        with self._lock:
            if self._open is None:
                self._seq += 1
                stem = f"{storage.stamp()}-{self.writer}-{self._seq:06d}"
                path = os.path.join(self.spool, _segment_name(stem, self.writer))
                self._open = _Segment(path, self.schema)
            self._open.write(batch)
            if not self.pending:
                self._oldest = time.monotonic()
            self.pending += batch.num_rows

    def due(self) -> bool:
        """Enough rows, or the oldest old enough, to write."""
        return self.pending >= self.flush_rows or (
            self.pending > 0 and time.monotonic() - self._oldest >= self.flush_seconds
        )

    def flush(self) -> list[str]:
        """Write every closed segment and the open one; the parquet files written. A failed
        write raises and keeps its segment (and those after it) for the next flush."""
        with self._flushing:
            with self._lock:
                if self._open is not None:
                    self._closed.append(self._open.close())
                    self._open = None
            paths: list[str] = []
            while self._closed:
                segment = self._closed[0]
                written, rows = _write_segment(self.directory, segment)
                os.remove(segment)
                self._closed.pop(0)
                with self._lock:
                    self.pending -= rows
                    self.written_rows += rows
                paths += written
            return paths

    def adopt(self) -> int:
        """Take over this log's spool segments whose writer process is gone (a killed replica
        of this or an earlier deployment); the next flush writes them. The rows adopted."""
        rows = 0
        for name in sorted(os.listdir(self.spool)) if os.path.isdir(self.spool) else []:
            segment = SEGMENT_NAME.fullmatch(name)
            if segment is None or _alive(int(segment["pid"]), segment["stamp"]):
                continue
            mine = os.path.join(self.spool, _segment_name(segment["stem"], self.writer))
            try:  # a rename is atomic: of two replicas adopting at once, one wins
                os.rename(os.path.join(self.spool, name), mine)
            except FileNotFoundError:
                continue
            rows += _read_segment(mine).num_rows
            self._closed.append(mine)
        if rows:
            with self._lock:
                if not self.pending:
                    self._oldest = time.monotonic() - self.flush_seconds  # due at once
                self.pending += rows
            log.warning("adopted %d %s rows a dead writer had not written", rows, self.directory)
        return rows


class _Segment:
    """An open spool file, an Arrow IPC stream: the schema, then one message per append, each
    handed to the OS in a single write (an IPC stream writer makes one per buffer, dozens per
    append: they showed in serving throughput). Readable only by this user: it holds inputs."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(self.fd, schema.serialize())

    def write(self, batch: pa.RecordBatch) -> None:
        os.write(self.fd, batch.serialize())

    def close(self) -> str:
        os.close(self.fd)
        return self.path


def _alive(pid: int, stamp: str) -> bool:
    """Whether the process that opened a segment at `stamp` (storage.stamp, UTC) still runs:
    a process with its pid that started later (a pid reused, say in a new container) is not
    the writer."""
    opened = datetime.strptime(stamp, "%Y%m%d-%H%M%S-%f").replace(tzinfo=timezone.utc)
    try:
        return psutil.Process(pid).create_time() <= opened.timestamp() + 1
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process
        return True


def _read_segment(path: str) -> pa.Table:
    """A segment's rows. A writer killed mid-append leaves a partial last batch, for a request
    it never answered: that batch is dropped."""
    batches: list[pa.RecordBatch] = []
    schema = None
    try:
        with pa.OSFile(path) as f, pa.ipc.open_stream(f) as reader:
            schema = reader.schema
            for batch in reader:
                batches.append(batch)
    except (pa.ArrowInvalid, OSError) as e:
        log.warning("%s ends in a partial write (an unanswered request): %s", path, e)
    if schema is None:
        return pa.table({})
    # one chunk, not one per append: the parquet write and the per-day split after it go over
    # thousands of one-row chunks otherwise (a 2,000-row flush: 0.17 s -> 0.04 s)
    return pa.Table.from_batches(batches, schema=schema).combine_chunks()


def _write_segment(directory: str, segment: str) -> tuple[list[str], int]:
    table = _read_segment(segment)
    stem = SEGMENT_NAME.fullmatch(os.path.basename(segment))["stem"]
    return (write(directory, table, stem) if table.num_rows else []), table.num_rows


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

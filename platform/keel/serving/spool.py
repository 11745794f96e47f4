"""The spool that writes the serving logs (their layout: keel.prediction_log).

A row is appended, to a local spool that outlives its process, before its request is
acknowledged. Spooled rows are written by size, by age and on shutdown; a failed write keeps its
rows for the next flush (retried with backoff) and a killed replica's rows are written by its
successor, so nothing acknowledged is lost and nothing is written twice. An append the spool
cannot take (its disk full) raises SpoolError and leaves the spool as it was: the request is
refused, not acknowledged. Only Serve replicas (serving/ingress.py)
write the logs, so the spool lives in serving.
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

import psutil
import pyarrow as pa

from keel import prediction_log as plog
from keel import storage

log = logging.getLogger(__name__)


# A failed flush is retried after flush_seconds, then twice as long each time, up to this: a
# store that is down for an hour is tried every 30 s, not every half second
RETRY_CAP_SECONDS = 30.0


class SpoolError(Exception):
    """An append the spool could not take (its disk full or failing); nothing was appended."""

    def __init__(self, spool: str, error: OSError) -> None:
        super().__init__(f"the log spool at {spool} cannot be written: {error.strerror or error}")


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
        self.failures = 0  # flushes failed in a row
        self._retry_at = 0.0  # monotonic time before which a failed flush is not retried

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Spool rows; SpoolError when the spool cannot take them (nothing appended)."""
        batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        with self._lock:
            try:
                if self._open is None:
                    self._seq += 1
                    stem = f"{storage.stamp()}-{self.writer}-{self._seq:06d}"
                    path = os.path.join(self.spool, _segment_name(stem, self.writer))
                    self._open = _Segment(path, self.schema)
                self._open.write(batch)
            except OSError as e:
                raise SpoolError(self.spool, e) from e
            if not self.pending:
                self._oldest = time.monotonic()
            self.pending += batch.num_rows

    def due(self) -> bool:
        """Enough rows, or the oldest old enough, to write, and no failed flush to wait out."""
        now = time.monotonic()
        return now >= self._retry_at and (
            self.pending >= self.flush_rows
            or (self.pending > 0 and now - self._oldest >= self.flush_seconds)
        )

    def retry_in(self) -> float:
        """Seconds until a failed flush is retried (0: none failed)."""
        return max(0.0, self._retry_at - time.monotonic())

    def flush(self) -> list[str]:
        """Write every closed segment and the open one; the parquet files written. A failed
        write raises and keeps its segment (and those after it) for the next flush, which
        `due` holds back for a backoff."""
        with self._flushing:
            with self._lock:
                if self._open is not None:
                    self._closed.append(self._open.close())
                    self._open = None
            paths: list[str] = []
            try:
                while self._closed:
                    segment = self._closed[0]
                    written, rows = _write_segment(self.directory, segment)
                    os.remove(segment)
                    self._closed.pop(0)
                    with self._lock:
                        self.pending -= rows
                        self.written_rows += rows
                    paths += written
            except Exception:
                self.failures += 1
                backoff = self.flush_seconds * 2 ** (self.failures - 1)
                self._retry_at = time.monotonic() + min(backoff, RETRY_CAP_SECONDS)
                raise
            self.failures, self._retry_at = 0, 0.0
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
    append: they showed in serving throughput). Readable only by this user: it holds inputs.
    A write that fails is cut off again: a partial message would hide every later one from
    the reader."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.path, self.size = path, 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.write(schema)
        except OSError:  # a segment without its schema is no segment
            os.close(self.fd)
            os.remove(path)
            raise

    def write(self, message: pa.RecordBatch | pa.Schema) -> None:
        data = memoryview(message.serialize())
        end = self.size + data.nbytes
        try:
            while data:  # a write may take part of it (a disk filling up), then fail
                data = data[os.write(self.fd, data) :]
        except OSError:
            os.ftruncate(self.fd, self.size)
            os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        self.size = end

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
    return (plog.write(directory, table, stem) if table.num_rows else []), table.num_rows

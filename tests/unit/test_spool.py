"""The serving logs' spool: flush by size and age, partitions, typed columns, failed writes
retried and a killed writer's rows adopted, without loss or duplicates."""

from __future__ import annotations

import errno
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel import prediction_log as plog
from keel import storage
from keel.config.schema import ColumnSpec, ColumnType
from keel.serving import spool
from tests.unit.test_prediction_log import COLUMNS, DAY1, DAY2, row

REPOSITORY = Path(__file__).resolve().parents[2]  # where a killed writer imports this file from


def make_log(tmp_path, flush_rows=10, flush_seconds=60.0) -> spool.ParquetLog:
    directory = plog.predictions_dir(str(tmp_path / "logs"), "churn")
    schema = plog.prediction_schema(COLUMNS)
    return spool.ParquetLog(directory, schema, flush_rows, flush_seconds, str(tmp_path / "spool"))


def parquet_files(directory: str) -> list[str]:
    return sorted(
        f.path
        for f in storage.list_dir(directory, recursive=True)
        if f.type.name == "File" and f.path.endswith(".parquet")
    )


def all_files(directory: str) -> list[str]:
    return sorted(
        f.path for f in storage.list_dir(directory, recursive=True) if f.type.name == "File"
    )


# ----------------------------------------------------------------------------- flushing


def test_append_spools_the_rows_and_writes_nothing_to_the_log(tmp_path):
    log = make_log(tmp_path, flush_rows=5)
    log.append([row(i) for i in range(4)])
    assert log.pending == 4 and not log.due()
    assert log.written_rows == 0
    assert not os.path.exists(log.directory)
    (segment,) = os.listdir(log.spool)  # on disk before append returned: a request's answer
    table = spool._read_segment(os.path.join(log.spool, segment))  # is sent only after that
    assert table.column("request_id").to_pylist() == [f"req-{i:04d}" for i in range(4)]


def test_reaching_flush_rows_makes_the_log_due_and_a_flush_writes_one_file(tmp_path):
    log = make_log(tmp_path, flush_rows=5)
    log.append([row(i) for i in range(3)])
    assert not log.due()
    log.append([row(i) for i in range(3, 5)])
    assert log.due()
    files = log.flush()
    assert log.pending == 0 and not log.due()
    assert log.written_rows == 5
    assert files == parquet_files(log.directory)
    assert len(files) == 1
    assert os.path.dirname(files[0]) == f"{log.directory}/date=2024-05-01"
    assert os.path.basename(files[0]).startswith("part-")
    assert pq.read_table(files[0]).num_rows == 5
    assert os.listdir(log.spool) == []  # written segments are deleted


def test_due_after_flush_seconds(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(spool.time, "monotonic", lambda: clock[0])
    log = make_log(tmp_path, flush_seconds=5.0)
    assert not log.due()  # nothing buffered: never due
    log.append([row(0)])
    clock[0] += 4.9
    assert not log.due()
    log.append([row(1)])  # a later row does not reset the age of the oldest
    clock[0] += 0.1
    assert log.due()
    assert len(log.flush()) == 1
    assert not log.due()
    clock[0] += 100.0
    assert not log.due()  # empty again
    log.append([row(2)])  # the age restarts with the next row
    clock[0] += 4.0
    assert not log.due()


def test_due_with_a_real_clock(tmp_path):
    import time

    log = make_log(tmp_path, flush_seconds=0.01)
    log.append([row(0)])
    time.sleep(0.02)
    assert log.due()


def test_flush_of_an_empty_buffer_returns_no_paths(tmp_path):
    log = make_log(tmp_path)
    assert log.flush() == []
    assert not os.path.exists(log.directory)


def test_flush_returns_paths_and_read_returns_the_rows_typed(tmp_path):
    log = make_log(tmp_path)
    rows = [row(i) for i in range(4)]
    log.append(rows)
    paths = log.flush()
    assert len(paths) == 1 and os.path.isfile(paths[0])
    assert paths == parquet_files(log.directory)
    assert log.pending == 0 and log.written_rows == 4

    table = plog.read(log.directory)
    assert table.num_rows == 4
    schema = plog.prediction_schema(COLUMNS)
    for field in schema:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.column("age").type == pa.int64()
    assert table.column("charges").type == pa.float64()
    assert table.column("region").type == pa.string()
    assert table.column("input_model").to_pylist() == ["premium"] * 4
    assert table.column("model").to_pylist() == ["churn"] * 4
    got = sorted(table.to_pylist(), key=lambda r: r["request_id"])
    for g, want in zip(got, rows, strict=True):
        assert g.pop("date") == "2024-05-01"  # the hive partition
        assert g == want


def test_rows_of_two_days_go_to_two_partitions(tmp_path):
    log = make_log(tmp_path)
    log.append([row(0, DAY1), row(1, DAY2), row(2, DAY1)])
    paths = log.flush()
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == [
        "date=2024-05-01",
        "date=2024-05-02",
    ]
    assert pq.read_table(paths[0]).column("request_id").to_pylist() == ["req-0000", "req-0002"]
    assert pq.read_table(paths[1]).column("request_id").to_pylist() == ["req-0001"]
    table = plog.read(log.directory)
    by_id = {r["request_id"]: r["date"] for r in table.to_pylist()}
    assert by_id == {"req-0000": "2024-05-01", "req-0001": "2024-05-02", "req-0002": "2024-05-01"}


def test_partition_date_is_the_utc_day(tmp_path):
    log = make_log(tmp_path)
    late_evening = datetime(2024, 5, 1, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    log.append([row(0, late_evening)])
    (path,) = log.flush()
    assert os.path.basename(os.path.dirname(path)) == "date=2024-05-02"


def test_successive_flushes_write_distinct_files(tmp_path):
    log = make_log(tmp_path)
    log.append([row(0)])
    first = log.flush()
    log.append([row(1)])
    second = log.flush()
    assert first != second
    assert len(parquet_files(log.directory)) == 2
    assert sorted(plog.read(log.directory).column("request_id").to_pylist()) == [
        "req-0000",
        "req-0001",
    ]


# ----------------------------------------------------------------------------- failures


def _fail_once(monkeypatch, call: int = 1):
    """Make the `call`-th storage.write_bytes raise; the others write."""
    real = storage.write_bytes
    calls = {"n": 0}

    def flaky(uri, data):
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError("disk on fire")
        real(uri, data)

    monkeypatch.setattr(storage, "write_bytes", flaky)
    return calls


def test_a_failed_write_keeps_the_rows_and_a_later_flush_writes_them_once(tmp_path, monkeypatch):
    _fail_once(monkeypatch)
    log = make_log(tmp_path)
    log.append([row(i) for i in range(3)])
    with pytest.raises(OSError, match="disk on fire"):
        log.flush()
    assert log.pending == 3 and log.due() is False  # not due before flush_seconds
    assert log.written_rows == 0
    assert parquet_files(log.directory) == []
    log.append([row(3)])  # rows appended after the failure are kept too, in order
    assert len(log.flush()) == 2  # the failed segment, then the new one
    assert log.pending == 0 and log.written_rows == 4
    ids = plog.read(log.directory).column("request_id").to_pylist()
    assert ids == ["req-0000", "req-0001", "req-0002", "req-0003"]
    assert os.listdir(log.spool) == []


def test_a_write_failing_on_the_second_day_does_not_duplicate_the_first(tmp_path, monkeypatch):
    _fail_once(monkeypatch, call=2)
    log = make_log(tmp_path)
    log.append([row(0, DAY1), row(1, DAY2)])
    with pytest.raises(OSError):
        log.flush()
    log.flush()
    ids = sorted(plog.read(log.directory).column("request_id").to_pylist())
    assert ids == ["req-0000", "req-0001"]


def test_a_flush_interrupted_before_deleting_its_segment_writes_no_duplicate(tmp_path, monkeypatch):
    log = make_log(tmp_path)
    log.append([row(0), row(1)])
    real = os.remove
    monkeypatch.setattr(spool.os, "remove", lambda path: (_ for _ in ()).throw(OSError("gone")))
    with pytest.raises(OSError, match="gone"):
        log.flush()  # the parquet file is written, the segment is still there
    monkeypatch.setattr(spool.os, "remove", real)
    log.flush()
    assert sorted(plog.read(log.directory).column("request_id").to_pylist()) == [
        "req-0000",
        "req-0001",
    ]
    assert log.pending == 0 and log.written_rows == 2


def test_failed_flushes_back_off_and_a_success_resets_the_wait(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(spool.time, "monotonic", lambda: clock[0])
    log = make_log(tmp_path, flush_rows=1, flush_seconds=2.0)
    monkeypatch.setattr(storage, "write_bytes", lambda uri, data: _raise(OSError("store down")))
    log.append([row(0)])
    waits = []
    for _ in range(6):
        assert log.due()
        with pytest.raises(OSError, match="store down"):
            log.flush()
        waits.append(log.retry_in())
        assert not log.due()
        clock[0] += waits[-1]
    assert waits == [2.0, 4.0, 8.0, 16.0, spool.RETRY_CAP_SECONDS, spool.RETRY_CAP_SECONDS]
    monkeypatch.undo()
    monkeypatch.setattr(spool.time, "monotonic", lambda: clock[0])
    log.append([row(1)])
    assert log.due()
    log.flush()
    assert log.failures == 0 and log.retry_in() == 0 and log.pending == 0
    ids = plog.read(log.directory).column("request_id").to_pylist()
    assert ids == ["req-0000", "req-0001"]


def test_an_append_the_full_disk_cuts_short_is_undone_and_later_appends_are_kept(
    tmp_path, monkeypatch
):
    log = make_log(tmp_path)
    log.append([row(0)])
    real = os.write
    writes = []

    def filling(fd, data):  # as a filling disk does: part of the write, then ENOSPC
        writes.append(len(data))
        if len(writes) == 1:
            return real(fd, bytes(data)[: len(data) // 2])
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)  # space again

    monkeypatch.setattr(spool.os, "write", filling)
    with pytest.raises(
        spool.SpoolError, match=f"log spool at {log.spool} cannot be written: No space"
    ):
        log.append([row(1)])
    assert log.pending == 1
    log.append([row(2)])
    log.flush()
    ids = plog.read(log.directory).column("request_id").to_pylist()
    assert ids == ["req-0000", "req-0002"]  # the refused row is not there, the later one is


def test_a_segment_the_full_disk_cannot_start_leaves_no_file(tmp_path, monkeypatch):
    log = make_log(tmp_path)
    monkeypatch.setattr(
        spool.os, "write", lambda fd, data: _raise(OSError(errno.ENOSPC, "No space left"))
    )
    with pytest.raises(spool.SpoolError):
        log.append([row(0)])
    assert os.listdir(log.spool) == [] and log.pending == 0
    monkeypatch.undo()
    log.append([row(1)])
    log.flush()
    assert plog.read(log.directory).column("request_id").to_pylist() == ["req-0001"]


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "part-x.parquet"
    (target / "in-the-way").mkdir(parents=True)  # the move onto a non-empty directory fails
    with pytest.raises(OSError):
        storage.write_bytes(str(target), b"rows")
    assert os.listdir(tmp_path) == ["part-x.parquet"]  # no hidden .part-x.parquet.tmp-*


def _raise(error: Exception):
    raise error


# ----------------------------------------------------------------------------- a killed writer

KILLED_WRITER = """
import json, os, signal, sys
from datetime import datetime, timezone
sys.path.insert(0, {root!r})
from tests.unit.test_spool import make_log, row
from pathlib import Path
log = make_log(Path({tmp!r}))
log.append([row(i) for i in range(3)])
log.append([row(3)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writer(tmp_path) -> None:
    """A process appends 4 rows in two appends and dies by SIGKILL before any flush."""
    import subprocess
    import sys

    code = KILLED_WRITER.format(root=str(REPOSITORY), tmp=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr


def test_a_new_log_adopts_the_rows_of_a_killed_writer_and_writes_them_once(tmp_path):
    _killed_writer(tmp_path)
    log = make_log(tmp_path)
    assert plog.read(log.directory).num_rows == 0  # the dead writer wrote nothing
    assert log.adopt() == 4
    assert log.pending == 4 and log.due()  # due at once
    assert make_log(tmp_path).adopt() == 0  # adopted once, by one log
    log.flush()
    ids = sorted(plog.read(log.directory).column("request_id").to_pylist())
    assert ids == [f"req-{i:04d}" for i in range(4)]
    assert os.listdir(log.spool) == []


def test_adopt_leaves_the_segments_of_live_writers(tmp_path):
    live = make_log(tmp_path)
    live.append([row(0)])
    assert make_log(tmp_path).adopt() == 0
    assert live.flush() and plog.read(live.directory).num_rows == 1


def test_a_segment_whose_pid_now_belongs_to_a_younger_process_is_adopted(tmp_path):
    """A pid reused (a new container starts its processes at the same pids): the process
    that runs under it started after the segment was opened, so it is not the writer."""
    old = make_log(tmp_path)
    old.append([row(0)])
    (name,) = os.listdir(old.spool)
    reused = "20200101-000000-000" + name[19:]  # opened long before this live process started
    os.rename(os.path.join(old.spool, name), os.path.join(old.spool, reused))
    (tmp_path / "spool" / os.path.basename(old.spool) / "notes.txt").write_text("not ours")
    log = make_log(tmp_path)
    assert log.adopt() == 1
    log.flush()
    assert plog.read(log.directory).column("request_id").to_pylist() == ["req-0000"]
    assert os.listdir(log.spool) == ["notes.txt"]  # a file not named as a segment is left


def test_a_partial_last_append_is_dropped_and_the_rest_adopted(tmp_path):
    _killed_writer(tmp_path)
    log = make_log(tmp_path)
    (segment,) = os.listdir(log.spool)
    path = os.path.join(log.spool, segment)
    with open(path, "r+b") as f:  # as if killed in the middle of writing the second append
        f.truncate(os.path.getsize(path) - 20)
    assert log.adopt() == 3
    log.flush()
    assert sorted(plog.read(log.directory).column("request_id").to_pylist()) == [
        "req-0000",
        "req-0001",
        "req-0002",
    ]


# ----------------------------------------------------------------------------- read


def test_writes_leave_no_temporary_files_and_read_skips_hidden_ones(tmp_path):
    log = make_log(tmp_path)
    log.append([row(0)])
    (path,) = log.flush()
    assert all_files(log.directory) == [path]  # the temporary name was moved away
    # a writer that crashed mid-write leaves a hidden temporary file: readers never see it
    partition = os.path.dirname(path)
    with open(os.path.join(partition, f".{os.path.basename(path)}.tmp-123"), "wb") as f:
        f.write(b"PAR1 half a file")
    table = plog.read(log.directory)
    assert table.column("request_id").to_pylist() == ["req-0000"]


def test_feedback_log_round_trip(tmp_path):
    directory = plog.feedback_dir(str(tmp_path))
    log = spool.ParquetLog(directory, plog.FEEDBACK_SCHEMA, 2, 60.0, str(tmp_path / "spool"))
    log.append([{"request_id": "a", "ts": DAY1, "label": json.dumps(1)}])
    log.append([{"request_id": "b", "ts": DAY2, "label": json.dumps("churns")}])
    log.flush()
    table = plog.read(plog.feedback_dir(str(tmp_path)))
    got = sorted((r["request_id"], r["label"], r["date"]) for r in table.to_pylist())
    assert got == [("a", "1", "2024-05-01"), ("b", '"churns"', "2024-05-02")]


def test_an_input_column_named_date_survives_read(tmp_path):
    columns = {"date": ColumnSpec(type=ColumnType.string)}
    schema = plog.prediction_schema(columns)
    log = spool.ParquetLog(str(tmp_path / "p"), schema, 10, 60.0, str(tmp_path / "spool"))
    log.append([plog.prediction_row({"request_id": "a", "ts": DAY1}, {"date": "last week"})])
    log.flush()
    rows = plog.read(str(tmp_path / "p")).to_pylist()
    assert "last week" in {v for r in rows for v in r.values()}

"""The serving logs' contract: the schemas, the typed input columns, the directories, the
parquet files' names by UTC day and their reader (the spool that writes them: test_spool.py)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pyarrow as pa

from keel import prediction_log as plog
from keel.config.schema import ColumnSpec, ColumnType

COLUMNS = {
    "age": ColumnSpec(type=ColumnType.int),
    "charges": ColumnSpec(type=ColumnType.float, nullable=True),
    "region": ColumnSpec(type=ColumnType.category),
    "name": ColumnSpec(type=ColumnType.string),
    "active": ColumnSpec(type=ColumnType.bool),
    "signup_ts": ColumnSpec(type=ColumnType.timestamp),
    "model": ColumnSpec(type=ColumnType.category),  # clashes with the fixed `model` field
}
DAY1 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
DAY2 = datetime(2024, 5, 2, 0, 0, 1, tzinfo=timezone.utc)


def row(i: int, ts: datetime = DAY1) -> dict:
    fixed = {
        "request_id": f"req-{i:04d}",
        "ts": ts,
        "model": "churn",
        "version": 3,
        "variant": "primary",
        "latency_ms": 1.5 + i,
        "prediction": i / 100,
        plog.PROBABILITIES: None,  # a binary model's row
        "output": json.dumps({"label": "churns", "rules": []}),
    }
    inputs = {
        "age": 20 + i,
        "charges": None if i % 2 else 10.0 * i,
        "region": "north",
        "name": f"n{i}",
        "active": i % 3 == 0,
        "signup_ts": "2024-01-01T00:00:00Z",
        "model": "premium",
    }
    return plog.prediction_row(fixed, inputs)


# ----------------------------------------------------------------------------- schema


def test_prediction_schema_types_and_input_prefix():
    schema = plog.prediction_schema(COLUMNS)
    assert schema.names[: len(plog.PREDICTION_FIELDS)] == [n for n, _ in plog.PREDICTION_FIELDS]
    assert schema.names[len(plog.PREDICTION_FIELDS) :] == [
        "age",
        "charges",
        "region",
        "name",
        "active",
        "signup_ts",
        "input_model",
    ]
    types = dict(zip(schema.names, schema.types, strict=True))
    assert types["age"] == pa.int64()
    assert types["charges"] == pa.float64()
    assert types["region"] == types["name"] == types["signup_ts"] == pa.string()
    assert types["active"] == pa.bool_()
    assert types["model"] == pa.string() and types["input_model"] == pa.string()
    assert types["version"] == pa.int64()
    assert types["ts"] == pa.timestamp("us", tz="UTC")


def test_prediction_row_prefixes_clashing_inputs_only():
    r = plog.prediction_row({"model": "churn", "version": 1}, {"model": "premium", "age": 30})
    assert r == {"model": "churn", "version": 1, "input_model": "premium", "age": 30}


def test_paths():
    assert plog.predictions_dir("/l", "churn") == "/l/predictions/model=churn"
    assert plog.feedback_dir("/l/") == "/l/feedback"


def test_logged_models_are_those_with_a_prediction_log(tmp_path):
    logs = str(tmp_path / "logs")
    assert plog.logged_models(logs) == []  # nothing served yet
    table = pa.Table.from_pylist([row(0)], schema=plog.prediction_schema(COLUMNS))
    for model in ("listings", "churn"):
        plog.write(plog.predictions_dir(logs, model), table)
    plog.write(plog.requests_dir(logs, "other"), table)  # requests alone: no prediction log
    (tmp_path / "logs" / "predictions" / "stray").mkdir()  # not a model's partition
    assert plog.logged_models(logs) == ["churn", "listings"]


# ----------------------------------------------------------------------------- write and read


def test_write_names_files_so_a_repeated_write_replaces_them(tmp_path):
    schema = plog.prediction_schema(COLUMNS)
    table = pa.Table.from_pylist([row(0, DAY1), row(1, DAY2)], schema=schema)
    directory = str(tmp_path / "logs")
    first = plog.write(directory, table, "seg-1")
    assert [os.path.basename(p) for p in first] == ["part-seg-1.parquet"] * 2
    assert plog.write(directory, table, "seg-1") == first
    assert plog.read(directory).num_rows == 2
    assert len(plog.write(directory, table)) == 2  # a fresh name by default: new files
    assert plog.read(directory).num_rows == 4


def test_read_of_a_missing_directory_is_an_empty_table(tmp_path):
    table = plog.read(str(tmp_path / "nothing" / "here"))
    assert isinstance(table, pa.Table)
    assert table.num_rows == 0


def test_read_while_the_first_file_is_still_being_written_is_an_empty_table(tmp_path):
    """A writer has made the day's directory and is writing under a hidden name (as
    storage.write_bytes does): a bounded read finds nothing yet instead of failing on the
    `date` partition the bounds filter on (a pipeline polling the feedback log did)."""
    day = tmp_path / "feedback" / f"date={DAY1:%Y-%m-%d}"
    day.mkdir(parents=True)
    (day / ".part-seg-1.parquet.tmp-1").write_bytes(b"PAR1 half a file")
    table = plog.read(str(tmp_path / "feedback"), DAY1, DAY2, columns=["request_id"])
    assert table.num_rows == 0

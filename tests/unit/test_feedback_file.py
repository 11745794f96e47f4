"""`keel feedback FILE`: labels from CSV and parquet land in the feedback log stored as the
endpoint stores them; bad rows are refused one by one, bad files with a message naming them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel import prediction_log as plog
from keel.errors import ConfigError, DataError
from keel.monitoring.feedback import describe, ingest


def logged(logs: Path) -> dict[str, str]:
    table = plog.read(plog.feedback_dir(str(logs)))
    if table.num_rows == 0:  # nothing logged: no columns either
        return {}
    return dict(zip(table["request_id"].to_pylist(), table["label"].to_pylist(), strict=True))


def test_csv_labels_land_as_the_endpoint_stores_them(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label,note\n0001,1,a\nabc,0,b\n")
    result = ingest(str(path), str(tmp_path / "logs"))
    assert (result.rows, result.accepted, result.refused) == (2, 2, {})
    # ids stay text (no 0001 -> 1); an int label is stored as json.dumps(1), like POST 1
    assert logged(tmp_path / "logs") == {"0001": "1", "abc": "0"}
    assert len(result.paths) == 1 and result.paths[0].endswith(".parquet")


def test_parquet_labels_keep_their_type(tmp_path):
    path = tmp_path / "labels.parquet"
    table = pa.table({"request_id": ["a", "b", "c"], "label": ["stays", "churns", "stays"]})
    pq.write_table(table, path)
    ingest(str(path), str(tmp_path / "logs"))
    assert logged(tmp_path / "logs") == {
        "a": json.dumps("stays"),
        "b": json.dumps("churns"),
        "c": json.dumps("stays"),
    }
    prices = tmp_path / "prices.parquet"
    pq.write_table(pa.table({"request_id": [7, 8], "label": [1234.5, 99.0]}), prices)
    ingest(str(prices), str(tmp_path / "logs"))
    assert {k: v for k, v in logged(tmp_path / "logs").items() if k in "78"} == {
        "7": "1234.5",
        "8": "99.0",
    }


def test_rows_without_an_id_or_a_label_are_refused_and_the_rest_land(tmp_path):
    path = tmp_path / "labels.parquet"
    ids = ["a", None, "", "  ", "b", "c", "d", "e"]
    labels = [1.0, 1.0, 1.0, 1.0, None, float("nan"), float("inf"), 0.0]
    pq.write_table(pa.table({"request_id": ids, "label": labels}), path)
    result = ingest(str(path), str(tmp_path / "logs"))
    assert (result.rows, result.accepted) == (8, 2)
    assert result.refused == {"no request_id": [2, 3, 4], "no label": [5, 6, 7]}
    assert logged(tmp_path / "logs") == {"a": "1.0", "e": "0.0"}
    lines = dict(describe(result))
    assert lines["refused"] == "6" and lines["  no request_id"] == "3 (data rows 2, 3, 4)"


def test_empty_csv_cells_are_missing(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label\n,yes\nx,\ny,NA\nz,no\n")
    result = ingest(str(path), str(tmp_path / "logs"))
    assert result.refused == {"no request_id": [1], "no label": [2, 3]}
    assert logged(tmp_path / "logs") == {"z": '"no"'}


def test_a_file_of_only_bad_rows_writes_nothing(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label\na,\nb,\n")
    result = ingest(str(path), str(tmp_path / "logs"))
    assert (result.accepted, result.paths) == (0, [])
    assert dict(describe(result))["written"] == "nothing: no valid row"
    assert logged(tmp_path / "logs") == {}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: no such file"),
        ("labels.json", "{}", "expected a .csv or .parquet file"),
        ("labels.csv", "id,lab\n1,2\n", "missing request_id, label (columns: id, lab)"),
        ("labels.csv", "request_id,y\n1,2\n", "missing label (columns: request_id, y)"),
        ("labels.parquet", "not parquet", "not a readable parquet file"),
        ("labels.csv", 'request_id,label\n"a,1\n', "not a readable csv file"),
    ],
)
def test_bad_files_name_the_file_and_what_to_fix(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        ingest(str(path), str(tmp_path / "logs"))
    assert str(path) in str(caught.value)


def test_a_label_column_of_another_type_is_refused(tmp_path):
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"request_id": ["a"], "label": [[1, 2]]}), path)
    with pytest.raises(DataError, match="column label has type list"):
        ingest(str(path), str(tmp_path / "logs"))


def test_the_job_takes_one_file_apart_from_the_overrides(make_cfg, tmp_path):
    from keel.app import words_and_overrides
    from keel.cli import feedback as job

    files, overrides = words_and_overrides(["labels.csv", "paths.root=/x", "~seed", "+a.b=1"])
    assert (files, overrides) == (["labels.csv"], ["paths.root=/x", "~seed", "+a.b=1"])
    cfg = make_cfg()
    for wrong in ([], ["a.csv", "b.csv"], ["--help"]):
        with pytest.raises(ConfigError, match="keel feedback takes one FILE"):
            job.feedback_job(cfg, wrong)
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label\nabc,1\n")
    summary = job.feedback_job(cfg, [str(path)])
    assert dict(summary.rows)["accepted"] == "1"
    assert logged(Path(cfg.paths.logs)) == {"abc": "1"}

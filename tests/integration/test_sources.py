"""File sources (parquet, csv, json; paths and URIs) and bad files with errors that name them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from keel.data import synthetic
from keel.data.validation import validate_source
from keel.errors import DataError


@pytest.fixture
def churn(make_cfg):
    cfg = make_cfg("dataset.source.rows=3000")
    return cfg, synthetic.generate(cfg.dataset), synthetic.planted(cfg.dataset)


def _validate(make_cfg, fmt: str, path, *extra: str):
    cfg = make_cfg(f"dataset.source.format={fmt}", f"dataset.source.path={path}", *extra)
    return validate_source(cfg.dataset, cfg.paths.reports)


def _write_csv(table: pa.Table, path) -> None:
    pacsv.write_csv(table, path)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_file_sources_find_the_planted_rows(make_cfg, churn, tmp_path, fmt):
    _, table, planted = churn
    folder = tmp_path / fmt
    folder.mkdir()
    halves = [table.slice(0, 1500), table.slice(1500)]
    for i, part in enumerate(halves):
        path = folder / f"part-{i}.{fmt}"
        if fmt == "parquet":
            pq.write_table(part, path)
        elif fmt == "csv":
            _write_csv(part, path)
        else:
            part.to_pandas().to_json(path, orient="records", lines=True, date_format="iso")
    result = _validate(make_cfg, fmt, folder)
    assert result.report.counts() == planted
    assert result.valid.count() == 3000 - result.report.invalid_rows
    assert result.valid.schema().names == table.column_names


def test_uri_paths_work(make_cfg, churn, tmp_path):
    _, table, planted = churn
    pq.write_table(table, tmp_path / "churn.parquet")
    result = _validate(make_cfg, "parquet", f"file://{tmp_path}/churn.parquet")
    assert result.report.counts() == planted


def test_unparsable_values_are_quarantined_as_type_failures(make_cfg, churn, tmp_path):
    _, table, _ = churn
    frame = table.slice(0, 50).to_pandas()
    frame = frame[frame["customer_id"].str.match(r"^C\d{8}$", na=False)].copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame.index[:3], "age"] = "abc"
    path = tmp_path / "typed.csv"
    frame.to_csv(path, index=False)
    report = _validate(make_cfg, "csv", path, "dataset.validation.max_invalid_fraction=1").report
    assert report.counts()["age:type"] == 3
    example = next(r for r in report.rules if r.rule == "type").examples[0]
    assert example["_source_file"].endswith("typed.csv")


def test_missing_file_names_the_path(make_cfg, tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        _validate(make_cfg, "csv", tmp_path / "nope.csv")


def test_empty_file_is_named(make_cfg, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        _validate(make_cfg, "csv", tmp_path / "empty.csv")


def test_missing_and_extra_columns_name_file_and_column(make_cfg, churn, tmp_path):
    _, table, _ = churn
    _write_csv(table.drop_columns(["age"]), tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"missing\.csv: missing column\(s\) 'age'"):
        _validate(make_cfg, "csv", tmp_path / "missing.csv")
    _write_csv(table.append_column("shoe_size", pa.array([42] * len(table))), tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"x\.csv: unexpected column\(s\) 'shoe_size'"):
        _validate(make_cfg, "csv", tmp_path / "x.csv")


def test_malformed_csv_line_names_the_file(make_cfg, churn, tmp_path):
    _, table, _ = churn
    good = tmp_path / "csvs"
    good.mkdir()
    _write_csv(table.slice(0, 100), good / "a.csv")
    lines = (good / "a.csv").read_text().splitlines()
    lines.insert(5, lines[5] + ',"one field too many"')
    (good / "b.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"b\.csv: cannot parse as csv: .*Expected \d+ columns"):
        _validate(make_cfg, "csv", good)


def test_parquet_with_wrong_column_types_is_quarantined(make_cfg, churn, tmp_path):
    _, table, _ = churn
    frame = table.slice(0, 200).to_pandas()
    frame["tenure_months"] = frame["tenure_months"].astype(str).where(frame.index > 9, "ten")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "w.parquet")
    report = _validate(
        make_cfg, "parquet", tmp_path / "w.parquet", "dataset.validation.max_invalid_fraction=1"
    ).report
    assert report.counts()["tenure_months:type"] == 10
    assert isinstance(pd.Timestamp(report.rules[0].examples[0]["signup_ts"]), pd.Timestamp)


# The bad-data corpus (tests/data/bad/README.md): each file gives an error that names it and
# the problem, or its rows are all accounted for, the bad ones quarantined under their rule.
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
REFUSED = {
    "truncated.parquet": r"truncated\.parquet: cannot read as parquet: Parquet magic bytes",
    "empty.parquet": r"empty\.parquet: the file is empty",
    "empty.csv": r"empty\.csv: the file is empty",
    "header_only.csv": r"header_only\.csv has no rows",
    "broken_quoting.csv": r"broken_quoting\.csv: cannot parse as csv: .*Expected 12 columns",
    "latin1.csv": r"latin1\.csv: not UTF-8 text \(byte 0xf6 at offset \d+\); re-save the file",
    "missing_column.csv": r"missing_column\.csv: missing column\(s\) 'age'",
    "extra_column.csv": r"extra_column\.csv: unexpected column\(s\) 'shoe_size'",
}
QUARANTINED = {
    "huge_numbers.csv": {"age:type": 1, "tenure_months:type": 1, "monthly_charges:max": 1},
    # Arrow reads NaN/nan in a CSV as missing: null in a non-nullable column, fine in a nullable
    "nan_inf.csv": {"monthly_charges:type": 2, "monthly_charges:nullable": 1},
    "bom.csv": {},  # a UTF-8 byte-order mark is not part of the first column's name
}


def test_the_corpus_is_covered():
    files = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert files == set(REFUSED) | set(QUARANTINED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_file_is_refused_with_an_error_naming_it(make_cfg, name):
    with pytest.raises(DataError, match=REFUSED[name]):
        _validate(make_cfg, name.rsplit(".", 1)[1], BAD / name)


@pytest.mark.parametrize("name", sorted(QUARANTINED))
def test_bad_values_are_quarantined_and_no_row_is_lost(make_cfg, name):
    result = _validate(make_cfg, "csv", BAD / name, "dataset.validation.max_invalid_fraction=1")
    report = result.report
    assert report.rows == 20 and report.counts() == QUARANTINED[name]
    assert result.valid.count() + report.invalid_rows == 20
    if report.invalid_rows:
        quarantine = pq.read_table(report.quarantine_path)
        assert quarantine.num_rows == report.invalid_rows
        assert all(quarantine.column("_rules").to_pylist())  # each says which rule it broke


def test_json_rows_may_leave_out_a_nullable_key(make_cfg, churn, tmp_path):
    _, table, _ = churn
    rows = table.slice(0, 30).to_pylist()
    del rows[0]["total_charges"]  # nullable: absent means null, not a missing column
    path = tmp_path / "rows.json"
    path.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    report = _validate(make_cfg, "json", path, "dataset.validation.max_invalid_fraction=1").report
    assert report.rows == 30 and "total_charges:nullable" not in report.counts()

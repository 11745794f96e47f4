"""File sources (parquet, csv, json; paths and URIs) and bad files with errors that name them."""

from __future__ import annotations

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

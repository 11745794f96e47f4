"""keel's "your own data" files (tests/data/own) read and validated on Ray with hand-written
dataset configs: every row is accounted for, NA cells are nulls (not invalid values), and each
file's quirk (a column name with spaces, quoted cells, a local timestamp format, yes/no
booleans) is read as declared. Their traffic replays rows of the test split."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from keel.config import load
from keel.config.schema import (
    ColumnSpec,
    ColumnType,
    DatasetConfig,
    SimulateConfig,
    SourceConfig,
    SourceFormat,
    Task,
)
from keel.data.sources import read_table
from keel.data.split import keep
from keel.data.validation import check_rows, only, validate_source
from keel.traffic import traffic_table

OWN = Path(__file__).resolve().parents[1] / "data" / "own"
T = ColumnType
C = ColumnSpec
TUMOR_MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness")
TUMOR_MEASURES += ("concavity", "concave_points", "symmetry", "fractal_dimension")


def _dataset(name: str, task: Task, target: str, columns: dict, **keys) -> DatasetConfig:
    source = SourceConfig(format=SourceFormat.csv, path=str(OWN / f"{name}.csv"))
    return DatasetConfig(
        name=name, task=task, target=target, columns=columns, source=source, **keys
    )


DATASETS = {
    "penguins": _dataset(
        "penguins",
        Task.multiclass_classification,
        "species",
        {
            "species": C(type=T.category, allowed=["Adelie", "Chinstrap", "Gentoo"]),
            "island": C(type=T.category, allowed=["Biscoe", "Dream", "Torgersen"]),
            "bill_length_mm": C(type=T.float, nullable=True, min=0),
            "bill_depth_mm": C(type=T.float, nullable=True, min=0),
            "flipper_length_mm": C(type=T.int, nullable=True, min=0, source="Flipper Length (mm)"),
            "body_mass_g": C(type=T.int, nullable=True, min=0),
            "sex": C(type=T.category, nullable=True, allowed=["female", "male"]),
            "year": C(type=T.int),
        },
    ),
    "tumors": _dataset(  # no id column
        "tumors",
        Task.binary_classification,
        "diagnosis",
        {
            "diagnosis": C(type=T.category, allowed=["B", "M"]),
            **{
                f"{stat}_{measure}": C(type=T.float, min=0)
                for measure in TUMOR_MEASURES
                for stat in ("mean", "se", "worst")
            },
        },
    ),
    "rentals": _dataset(
        "rentals",
        Task.regression,
        "rentals",
        {
            "record_id": C(type=T.int, unique=True),
            "timestamp": C(type=T.timestamp, format="%m/%d/%Y %H:%M"),
            "season": C(type=T.category, allowed=["winter", "spring", "summer", "fall"]),
            "temperature_c": C(type=T.float),
            "humidity": C(type=T.int, min=0, max=100),
            "windspeed": C(type=T.float, min=0),
            "holiday": C(type=T.bool),
            "workingday": C(type=T.bool),
            "rentals": C(type=T.int, min=0),
        },
        id_column="record_id",
        timestamp_column="timestamp",
    ),
}


def _file(name: str) -> tuple[list[str], list[list[str]]]:
    with open(OWN / f"{name}.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def _na_cells(name: str, ds: DatasetConfig) -> dict[str, int]:
    header, rows = _file(name)
    keys = {spec.source or key: key for key, spec in ds.columns.items()}
    return {keys[c]: sum(r[i] == "NA" for r in rows) for i, c in enumerate(header)}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_row_of_an_own_file_is_accounted_for(name, tmp_path):
    ds = DATASETS[name]
    result = validate_source(ds, str(tmp_path / "reports"))
    valid = pa.concat_tables(result.valid.iter_batches(batch_format="pyarrow"))
    rows = len(_file(name)[1])
    assert result.report.rows == rows
    assert len(valid) + result.report.invalid_rows == rows
    assert result.report.counts() == {}  # declared as they are: nothing invalid
    assert valid.column_names == list(ds.columns)
    nulls = {c: valid.column(c).null_count for c in ds.columns}
    assert nulls == _na_cells(name, ds)  # an NA cell is a null, never a bad value


def _valid(name: str, tmp_path) -> pa.Table:
    result = validate_source(DATASETS[name], str(tmp_path / "reports"))
    return pa.concat_tables(result.valid.iter_batches(batch_format="pyarrow"))


def test_penguins_flipper_column_is_read_under_its_key(tmp_path):
    table = _valid("penguins", tmp_path)
    assert table.schema.field("flipper_length_mm").type == pa.int64()
    assert 170 < pc.mean(table.column("flipper_length_mm")).as_py() < 230


def test_rentals_times_and_booleans_are_typed(tmp_path):
    table = _valid("rentals", tmp_path)
    assert table.schema.field("timestamp").type == pa.timestamp("us")
    assert table.schema.field("holiday").type == pa.bool_()
    header, rows = _file("rentals")
    first = dict(zip(header, rows[0], strict=True))
    row = next(r for r in table.to_pylist() if r["record_id"] == int(first["record_id"]))
    assert row["timestamp"].strftime("%m/%d/%Y %H:%M") == first["timestamp"]
    assert row["workingday"] == (first["workingday"] == "true")
    assert row["holiday"] == (first["holiday"] == "yes")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_traffic_for_an_own_file_replays_its_test_split(name):
    ds = DATASETS[name]
    cfg = dataclasses.replace(load([]), dataset=ds, simulate=SimulateConfig(rows=200, seed=3))
    traffic = traffic_table(cfg)
    test = keep(only(check_rows(read_table(ds), ds), valid=True), ds, "test")
    assert len(traffic) == 200 and traffic.column_names == list(ds.columns)
    rows = {tuple(r.values()) for r in test.to_pylist()}  # the same columns, in one order
    assert {tuple(r.values()) for r in traffic.to_pylist()} <= rows

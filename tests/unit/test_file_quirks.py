"""What real files do and keel reads anyway: null spellings, names with spaces, timestamps in
a local format, yes/no booleans, quoted numbers, no id column, text class labels. No Ray: the
reading rules are tested through `read_table` (pyarrow in-process), which shares them with the
Ray reader, and the row rules through `check_rows`."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from keel.config.schema import (
    NULL_VALUES,
    ColumnSpec,
    ColumnType,
    DatasetConfig,
    SourceConfig,
    SourceFormat,
    Task,
)
from keel.data.batch import timestamps
from keel.data.sources import PATH_COLUMN, check_header, diagnose, null_texts, read_table
from keel.data.split import SPLITS, keep, position
from keel.data.validation import RULES_COLUMN, check_rows, only
from keel.errors import DataError
from keel.serving.schema import errors, instance_model

T = ColumnType
C = ColumnSpec
FMT = "%m/%d/%Y %H:%M"


def dataset(path=None, fmt="csv", task=Task.regression, **columns: ColumnSpec) -> DatasetConfig:
    """A dataset of `columns` (the first is the target) read from `path`."""
    source = SourceConfig(format=SourceFormat(fmt), path=None if path is None else str(path))
    return DatasetConfig(
        name="quirks", task=task, target=next(iter(columns)), columns=columns, source=source
    )


def checked(ds: DatasetConfig, path=None) -> pa.Table:
    return check_rows(read_table(ds, path), ds)


def rules(table: pa.Table) -> list[str]:
    return table.column(RULES_COLUMN).to_pylist()


# ----------------------------------------------------------------------------- null spellings

EVERY_TYPE = dict(
    n=C(type=T.float, nullable=True),
    i=C(type=T.int, nullable=True),
    c=C(type=T.category, nullable=True),
    b=C(type=T.bool, nullable=True),
    t=C(type=T.timestamp, nullable=True),
    s=C(type=T.string, nullable=True),
)


@pytest.mark.parametrize("null", [*NULL_VALUES, "nan", "NULL", "na", '"NA"'])
def test_csv_null_spellings_are_nulls_in_every_column_type(tmp_path, null):
    path = tmp_path / "nulls.csv"
    path.write_text(f"n,i,c,b,t,s\n1.5,2,a,yes,2024-01-02,x\n{','.join([null] * 6)}\n")
    out = checked(dataset(path, **EVERY_TYPE))
    assert rules(out) == ["", ""]  # null, not a type failure
    assert all(out.column(c).to_pylist()[1] is None for c in EVERY_TYPE)


def test_a_null_in_a_non_nullable_column_is_a_nullable_failure_not_a_type_failure(tmp_path):
    path = tmp_path / "nulls.csv"
    path.write_text("n,i\n1.5,NA\nN/A,3\n")
    out = checked(dataset(path, n=C(type=T.float), i=C(type=T.int)))
    assert rules(out) == ["i:nullable", "n:nullable"]


def test_null_values_are_configurable(tmp_path):
    path = tmp_path / "dash.csv"
    path.write_text("c,n\n-,1\nNA,-\n")
    ds = dataset(path, c=C(type=T.category, nullable=True), n=C(type=T.float, nullable=True))
    ds.source.null_values = ["-"]
    out = checked(ds)
    assert out.column("c").to_pylist() == [None, "NA"]  # NA is a value now (a country code)
    assert out.column("n").to_pylist() == [1.0, None]


def test_null_spellings_match_in_any_usual_case():
    texts = null_texts(SourceConfig(null_values=["NA", "null"]))
    assert {"NA", "na", "Na", "null", "NULL", "Null"} == set(texts)


def test_json_null_strings_are_nulls_and_absent_nullable_keys_are_null_columns(tmp_path):
    path = tmp_path / "rows.json"
    rows = [
        {"y": 1.0, "c": "a", "t": "2024-01-02T00:00:00"},
        {"y": 2.0, "c": "NA", "t": "null"},
        {"y": 3.0, "c": "", "t": "N/A"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = dataset(
        path,
        "json",
        y=C(type=T.float),
        c=C(type=T.category, nullable=True),
        t=C(type=T.timestamp, nullable=True),
        gone=C(type=T.int, nullable=True),  # in no row of the file
    )
    out = checked(ds)
    assert rules(out) == ["", "", ""]
    assert out.column("c").to_pylist() == ["a", None, None]
    assert out.column("t").to_pylist() == [datetime(2024, 1, 2), None, None]
    assert out.column("gone").null_count == 3


# ----------------------------------------------------------------------------- column names

PENGUIN_HEADER = "species,Flipper Length (mm)\n"


def penguins(tmp_path, **flipper) -> DatasetConfig:
    path = tmp_path / "penguins.csv"
    path.write_text(PENGUIN_HEADER + "Adelie,181\nGentoo,NA\n")
    flipper_length_mm = C(type=T.int, nullable=True, **flipper)
    task = Task.multiclass_classification
    return dataset(path, task=task, species=C(type=T.category), flipper_length_mm=flipper_length_mm)


def test_a_column_is_read_under_its_source_name_and_known_by_its_key(tmp_path):
    ds = penguins(tmp_path, source="Flipper Length (mm)")
    check_header(ds.source.path, ds.source.format, ds)
    out = checked(ds)
    assert out.column_names == ["species", "flipper_length_mm", RULES_COLUMN, PATH_COLUMN]
    assert out.column("flipper_length_mm").to_pylist() == [181, None]


def test_a_name_differing_only_in_case_and_spaces_suggests_source(tmp_path):
    ds = penguins(tmp_path)
    expected = (
        r"column 'Flipper Length \(mm\)' in .*penguins\.csv is not declared; declare it as "
        r"e\.g\. flipper_length_mm: \{type: int, source: 'Flipper Length \(mm\)'\}"
    )
    with pytest.raises(DataError, match=expected):
        check_header(ds.source.path, ds.source.format, ds)


def test_header_errors_name_the_files_column(tmp_path):
    ds = penguins(tmp_path, source="Flipper length")
    with pytest.raises(DataError, match=r"missing column\(s\) 'Flipper length' \(the source of "):
        read_table(ds)
    undeclared = dataset(ds.source.path, species=C(type=T.category))
    with pytest.raises(DataError, match=r"e\.g\. flipper_length_mm: \{type: \.\.\., source: "):
        read_table(undeclared)


def test_diagnose_names_the_broken_file_without_ray(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")  # a line with a field too many
    error = diagnose(dataset(path, a=C(type=T.int), b=C(type=T.int)), RuntimeError("ray"))
    assert "broken.csv: cannot parse as csv" in str(error)


# ----------------------------------------------------------------------------- timestamps


def test_a_timestamp_format_reads_the_files_spelling_and_still_iso(tmp_path):
    values = ["02/01/2023 19:00", "2023-02-01T19:00:00Z", "2023-02-01T21:00:00+02:00", "2023-02-01"]
    out = check_rows(pa.table({"t": values}), dataset(t=C(type=T.timestamp, format=FMT)))
    assert rules(out) == ["", "", "", ""]
    assert out.column("t").to_pylist() == [datetime(2023, 2, 1, 19)] * 3 + [datetime(2023, 2, 1)]


def test_a_value_in_neither_spelling_is_a_type_failure():
    out = check_rows(
        pa.table({"t": ["13/45/2023 10:00", "yesterday", None]}),
        dataset(t=C(type=T.timestamp, format=FMT, nullable=True)),
    )
    assert rules(out) == ["t:type", "t:type", ""]


def test_timestamps_take_an_optional_format():
    table = pa.table({"t": ["07/13/2023 13:00", "2023-07-13T15:00:00+02:00"]})
    expected = np.array(["2023-07-13T13:00", "2023-07-13T13:00"], "datetime64[us]")
    assert (timestamps(table, "t", FMT) == expected).all()
    assert np.isnat(timestamps(table, "t")[0])  # without the format: ISO 8601 only


def test_a_formatted_zone_is_converted_to_utc():
    table = pa.table({"t": ["2023-07-13 15:00 +0200"]})
    assert timestamps(table, "t", "%Y-%m-%d %H:%M %z")[0] == np.datetime64("2023-07-13T13:00")


@pytest.fixture(scope="module")
def rentals_instance():
    columns = {"timestamp": C(type=T.timestamp, format=FMT), "temp": C(type=T.float)}
    return instance_model("rentals", columns, {"timestamp", "temp"})


@pytest.mark.parametrize(
    ("value", "passed_on"),
    [
        ("02/01/2023 19:00", "2023-02-01T19:00:00"),  # as the file writes it: passed on as ISO
        ("2023-02-01T19:00:00Z", "2023-02-01T19:00:00Z"),  # as keel simulate sends it
    ],
)
def test_a_request_may_carry_the_files_spelling_or_iso(rentals_instance, value, passed_on):
    row = rentals_instance.model_validate({"timestamp": value, "temp": 3.5}).model_dump()
    assert row["timestamp"] == passed_on
    assert timestamps(pa.table({"t": [row["timestamp"]]}), "t")[0] == np.datetime64(
        "2023-02-01T19:00"
    )


@pytest.mark.parametrize("value", ["2023-13-01", "13/01/2023 19:00", "tomorrow", ""])
def test_a_request_with_a_bad_time_is_refused_naming_the_field(rentals_instance, value):
    with pytest.raises(ValidationError) as e:
        rentals_instance.model_validate({"timestamp": value, "temp": 3.5})
    assert errors(e.value) == [
        f"timestamp: Value error, not a timestamp as {FMT!r} or ISO 8601 "
        f"(e.g. 2024-05-01T12:00:00Z) (got {value!r})"
    ]


def test_the_published_schema_does_not_promise_date_time_for_a_formatted_column(
    rentals_instance,
):
    field = rentals_instance.model_json_schema()["properties"]["timestamp"]
    assert field["type"] == "string" and "format" not in field


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("yes", True), ("No", False), ("TRUE", True), ("false", False), ("1", True)],
        *[("0", False), ("t", True), ("F", False), ("Y", True), ("n", False), (" yes ", True)],
    ],
)
def test_booleans_as_files_write_them(text, value):
    out = check_rows(pa.table({"b": [text]}), dataset(b=C(type=T.bool)))
    assert rules(out) == [""] and out.column("b").to_pylist() == [value]


def test_quoted_numbers_and_labels_are_read(tmp_path):
    path = tmp_path / "tumors.csv"
    path.write_text('"diagnosis","radius","count"\n"M","17.61","3"\n"B"," 4.5","12"\n')
    ds = dataset(
        path,
        task=Task.binary_classification,
        diagnosis=C(type=T.category, allowed=["M", "B"]),
        radius=C(type=T.float),
        count=C(type=T.int),
    )
    out = checked(ds)
    assert rules(out) == ["", ""]
    assert out.column("radius").to_pylist() == [17.61, 4.5]
    assert out.column("count").to_pylist() == [3, 12]


# ----------------------------------------------------------------------------- no id column


def no_id_rows(n: int = 400, nulls: bool = False) -> tuple[DatasetConfig, pa.Table]:
    rng = np.random.default_rng(0)
    size = rng.integers(100, 200, n).astype(float)
    if nulls:
        size[::7] = np.nan
    raw = pa.table(
        {
            "y": rng.choice(["B", "M"], n),
            "x": rng.normal(size=n).round(3).astype(str),
            "size": [None if np.isnan(v) else str(int(v)) for v in size],
        }
    )
    ds = dataset(
        task=Task.binary_classification,
        y=C(type=T.category),
        x=C(type=T.float),
        size=C(type=T.int, nullable=True),
    )
    return ds, only(check_rows(raw, ds), valid=True)


def test_without_an_id_each_row_has_one_split_whatever_the_order():
    ds, rows = no_id_rows()
    order = np.random.default_rng(1).permutation(len(rows))
    assert (position(rows.take(order), ds) == position(rows, ds)[order]).all()
    parts = [keep(rows, ds, name) for name in SPLITS]
    assert sum(len(p) for p in parts) == len(rows)
    assert 0.1 < len(parts[2]) / len(rows) < 0.2  # test: 0.15


def test_without_an_id_a_rows_split_does_not_depend_on_its_batch():
    ds, rows = no_id_rows(nulls=True)
    whole = position(rows, ds)
    alone = np.concatenate([position(rows.slice(i, 1), ds) for i in range(len(rows))])
    assert (whole == alone).all()


def test_a_request_model_needs_no_id_column():
    model = instance_model("tumors", {"radius": C(type=T.float)}, {"radius"})
    assert model.model_validate({"radius": 1.5}).radius == 1.5


# ----------------------------------------------------------------------------- text labels


@pytest.mark.parametrize(
    ("task", "y", "labels"),
    [
        (Task.binary_classification, ["M", "B", "B", "M"], ["B", "M"]),
        (
            Task.multiclass_classification,
            ["Gentoo", "Adelie", "Chinstrap", "Adelie"],
            ["Adelie", "Chinstrap", "Gentoo"],
        ),
    ],
)
def test_text_class_labels_train_as_sorted_classes(task, y, labels):
    from keel.models.head import Head

    head = Head.fit(task, np.array(y, dtype=object))
    assert head.labels == labels
    assert head.encode(np.array(y, dtype=object)).tolist() == [labels.index(v) for v in y]
    assert Head.fit(task, np.array(y[::-1], dtype=object)).labels == labels  # order-free

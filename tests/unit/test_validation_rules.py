"""Row rules of keel.data.validation on local pyarrow tables (the per-batch half of the stage)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from keel.config import load
from keel.config.schema import ColumnSpec, ColumnType, DatasetConfig, Task
from keel.data.sources import PATH_COLUMN
from keel.data.validation import (
    RULES_COLUMN,
    RuleResult,
    ValidationReport,
    _merge,
    _summarize,
    check_rows,
    coerce,
    failure_message,
    mark_duplicates,
    only,
)
from keel.errors import DataError

T = ColumnType


def dataset(**columns: ColumnSpec) -> DatasetConfig:
    return DatasetConfig(
        name="tiny", task=Task.regression, target=next(iter(columns)), columns=columns
    )


def labels(table: pa.Table, ds: DatasetConfig) -> list[str]:
    return check_rows(table, ds).column(RULES_COLUMN).to_pylist()


def one(spec: ColumnSpec, values: list, arrow_type: pa.DataType | None = None) -> pa.Table:
    """check_rows of a one-column dataset named `v`."""
    return check_rows(pa.table({"v": pa.array(values, type=arrow_type)}), dataset(v=spec))


@pytest.fixture(scope="module")
def churn() -> DatasetConfig:
    return load([]).dataset


def churn_rows(*changes: dict) -> pa.Table:
    """One valid churn row per `changes` dict, with those values replaced."""
    base = {
        "customer_id": "C00000001",
        "signup_ts": "2024-01-02",
        "age": 30,
        "tenure_months": 12,
        "monthly_charges": 50.0,
        "total_charges": 600.0,
        "contract": "one-year",
        "region": "north",
        "payment_method": "card",
        "internet_service": "dsl",
        "support_calls": 1,
        "churned": 0,
    }
    return pa.Table.from_pylist([{**base, **c} for c in changes])


# ----------------------------------------------------------------------------- one rule each


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        (ColumnSpec(type=T.int), ["1", "x", "3"], ["", "v:type", ""]),
        (ColumnSpec(type=T.float), [1.0, None, 2.0], ["", "v:nullable", ""]),
        (ColumnSpec(type=T.category), ["a", None], ["", "v:nullable"]),
        (ColumnSpec(type=T.int, min=0), [0, -1, 5], ["", "v:min", ""]),
        (ColumnSpec(type=T.float, max=1), [1.0, 1.5, -3.0], ["", "v:max", ""]),
        (ColumnSpec(type=T.int, min=0, max=10), [0, 10, 11, -1], ["", "", "v:max", "v:min"]),
        (
            ColumnSpec(type=T.category, allowed=["a", "b"]),
            ["a", "c", "b", "A"],
            ["", "v:allowed", "", "v:allowed"],
        ),
        (
            ColumnSpec(type=T.string, regex=r"X\d+"),
            ["X1", "X", "X12a", "aX1", "X99"],
            ["", "v:regex", "v:regex", "v:regex", ""],
        ),
        (
            ColumnSpec(type=T.string, regex=r"^C\d{8}$"),
            ["C00000001", "C1", "C000000012"],
            ["", "v:regex", "v:regex"],
        ),
    ],
)
def test_each_rule_labels_exactly_the_bad_rows(spec, values, expected):
    assert one(spec, values).column(RULES_COLUMN).to_pylist() == expected


def test_null_in_a_non_nullable_column_breaks_only_nullable():
    spec = ColumnSpec(type=T.category, allowed=["a"], regex=None)
    assert one(spec, [None]).column(RULES_COLUMN).to_pylist() == ["v:nullable"]
    spec = ColumnSpec(type=T.int, min=5, max=9)
    assert one(spec, [None], pa.int64()).column(RULES_COLUMN).to_pylist() == ["v:nullable"]


@pytest.mark.parametrize(
    "spec",
    [
        ColumnSpec(type=T.float, nullable=True, min=0, max=1),
        ColumnSpec(type=T.category, nullable=True, allowed=["a"]),
        ColumnSpec(type=T.string, nullable=True, regex=r"X\d"),
        ColumnSpec(type=T.timestamp, nullable=True),
        ColumnSpec(type=T.bool, nullable=True),
    ],
)
def test_nullable_columns_accept_nulls(spec):
    out = one(spec, [None, None])
    assert out.column(RULES_COLUMN).to_pylist() == ["", ""]
    assert out.column("v").null_count == 2


def test_a_row_breaking_two_rules_lists_both(churn):
    table = churn_rows({}, {"age": 17, "contract": "weekly"}, {"customer_id": "X1", "region": None})
    assert labels(table, churn) == [
        "",
        "age:min; contract:allowed",
        "customer_id:regex; region:nullable",
    ]


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({}, ""),
        ({"total_charges": None, "payment_method": None}, ""),  # nullable in churn.yaml
        ({"age": 101}, "age:max"),
        ({"tenure_months": -1}, "tenure_months:min"),
        ({"monthly_charges": 4.99}, "monthly_charges:min"),
        ({"payment_method": "cash"}, "payment_method:allowed"),
        ({"internet_service": None}, "internet_service:nullable"),
        ({"signup_ts": "yesterday"}, "signup_ts:type"),
        ({"churned": 2}, "churned:max"),
        ({"customer_id": "c00000001"}, "customer_id:regex"),
    ],
)
def test_churn_schema_rules(churn, change, label):
    assert labels(churn_rows(change), churn) == [label]


# ----------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    ("type_", "raw", "arrow", "expected"),
    [
        (T.int, ["42", "-7", " 3 "], pa.int64(), [42, -7, 3]),
        (T.int, ["2.0"], pa.int64(), [2]),
        (T.float, ["1.5", "2", "-0.25", "1e3"], pa.float64(), [1.5, 2.0, -0.25, 1000.0]),
        (
            T.bool,
            ["true", "0", "YES", "f", "1", "False"],
            pa.bool_(),
            [True, False, True, False, True, False],
        ),
        (
            T.timestamp,
            ["2024-01-02", "2024-02-29"],
            pa.timestamp("us"),
            [datetime(2024, 1, 2), datetime(2024, 2, 29)],
        ),
        (T.category, ["a", "b"], pa.string(), ["a", "b"]),
    ],
)
def test_strings_are_coerced_to_the_declared_type(type_, raw, arrow, expected):
    out = one(ColumnSpec(type=type_), raw)
    assert out.schema.field("v").type == arrow
    assert out.column("v").to_pylist() == expected
    assert out.column(RULES_COLUMN).to_pylist() == [""] * len(raw)


@pytest.mark.parametrize(
    ("type_", "raw"),
    [
        (T.int, ["1", "abc", "1.5", "", "inf"]),
        (T.float, ["1", "abc", "1,5", "one"]),
        (T.bool, ["true", "maybe", "2", "ja"]),
        (T.timestamp, ["2024-01-02", "notadate", "2024-02-30", "13/13/2024"]),
    ],
)
def test_unparsable_strings_are_type_failures_not_crashes(type_, raw):
    out = one(ColumnSpec(type=type_), raw)
    assert out.column(RULES_COLUMN).to_pylist() == [""] + ["v:type"] * (len(raw) - 1)
    assert out.column("v").null_count == len(raw) - 1  # the bad values become nulls


def test_mixed_iso8601_timestamp_strings_all_parse():
    # A CSV column (read as text) may mix date-only and full ISO 8601 values; all are valid.
    raw = ["2024-01-02", "2024-01-02T03:04:05", "2024-01-02 03:04:05"]
    out = one(ColumnSpec(type=T.timestamp), raw)
    assert out.column(RULES_COLUMN).to_pylist() == ["", "", ""]
    assert out.column("v").to_pylist() == [
        datetime(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4, 5),
        datetime(2024, 1, 2, 3, 4, 5),
    ]


def test_timezone_aware_timestamp_strings_become_utc():
    out = one(ColumnSpec(type=T.timestamp), ["2024-01-02T03:00:00+02:00"])
    assert out.column("v").to_pylist() == [datetime(2024, 1, 2, 1, 0, 0)]


def test_int_column_given_fractional_floats_is_a_type_failure():
    out = one(ColumnSpec(type=T.int), [1.5, 2.0, float("inf"), -3.0], pa.float64())
    assert out.column(RULES_COLUMN).to_pylist() == ["v:type", "", "v:type", ""]
    assert out.column("v").to_pylist() == [None, 2, None, -3]


def test_int_column_keeps_large_int64_values_exactly():
    big = 2**53 + 1  # not representable as float64
    out = one(ColumnSpec(type=T.int), [big, 5], pa.int64())
    assert out.column(RULES_COLUMN).to_pylist() == ["", ""]
    assert out.column("v").to_pylist() == [big, 5]


def test_huge_numbers_are_type_failures_or_kept_exactly_never_wrapped():
    raw = ["1e30", "-1e19", "9007199254740993", "9223372036854775807", "9223372036854775808"]
    out = one(ColumnSpec(type=T.int), [*raw, "1.5e3"])
    assert out.column(RULES_COLUMN).to_pylist() == ["v:type", "v:type", "", "", "v:type", ""]
    assert out.column("v").to_pylist() == [None, None, 2**53 + 1, 2**63 - 1, None, 1500]
    floats = one(ColumnSpec(type=T.int), [1e16, 1e19, -1e30], pa.float64())
    assert floats.column(RULES_COLUMN).to_pylist() == ["", "v:type", "v:type"]
    assert floats.column("v").to_pylist() == [10**16, None, None]


def test_nan_and_inf_in_a_float_column_are_type_failures():
    out = one(
        ColumnSpec(type=T.float), [1.0, float("nan"), float("inf"), -float("inf")], pa.float64()
    )
    assert out.column(RULES_COLUMN).to_pylist() == ["", "v:type", "v:type", "v:type"]
    assert out.column("v").to_pylist() == [1.0, None, None, None]
    text = one(ColumnSpec(type=T.float), ["2.5", "inf", "-Infinity", "nan"])
    assert text.column(RULES_COLUMN).to_pylist() == ["", "v:type", "v:type", "v:type"]


def test_bool_column_keeps_arrow_booleans():
    out = one(ColumnSpec(type=T.bool), [True, False, None], pa.bool_())
    assert out.column("v").to_pylist() == [True, False, None]
    assert out.column(RULES_COLUMN).to_pylist() == ["", "", "v:nullable"]


def test_category_given_numbers_compares_their_text():
    spec = ColumnSpec(type=T.category, allowed=["1", "2"])
    out = one(spec, [1, 2, 3], pa.int64())
    assert out.column("v").to_pylist() == ["1", "2", "3"]
    assert out.column(RULES_COLUMN).to_pylist() == ["", "", "v:allowed"]


def test_category_given_a_fractional_float_is_not_truncated():
    # JSON sources give integral categories as floats (1.0 -> "1"), but 2.5 is not category "2".
    spec = ColumnSpec(type=T.category, allowed=["1", "2"])
    out = one(spec, [1.0, 2.5], pa.float64())
    assert out.column("v").to_pylist() == ["1", "2.5"]
    assert out.column(RULES_COLUMN).to_pylist() == ["", "v:allowed"]


def test_coerce_returns_typed_array_and_bad_mask():
    table = pa.table({"v": ["7", "x", None]})
    typed, bad = coerce(table, "v", ColumnSpec(type=T.int))
    assert typed.type == pa.int64()
    assert typed.to_pylist() == [7, None, None]
    assert bad.tolist() == [False, True, False]  # a null is not a type failure


def test_check_rows_casts_every_declared_column(churn):
    out = check_rows(churn_rows({}), churn)
    types = {f.name: f.type for f in out.schema}
    assert types["age"] == pa.int64()
    assert types["monthly_charges"] == pa.float64()
    assert types["signup_ts"] == pa.timestamp("us")
    assert types["contract"] == pa.string()
    assert out.column_names == [*churn.columns, RULES_COLUMN]


# ----------------------------------------------------------------------------- columns


def test_missing_column_raises_data_error_naming_it(churn):
    with pytest.raises(DataError, match=r"missing column.*'age'"):
        check_rows(churn_rows({}).drop_columns(["age"]), churn)


def test_unexpected_column_raises_data_error_naming_it(churn):
    table = churn_rows({}).append_column("shoe_size", pa.array([42]))
    with pytest.raises(DataError, match=r"unexpected column.*'shoe_size'"):
        check_rows(table, churn)


def test_data_error_names_the_source_file(churn):
    table = churn_rows({}).drop_columns(["age"]).append_column(PATH_COLUMN, pa.array(["/d/a.csv"]))
    with pytest.raises(DataError, match=r"/d/a\.csv"):
        check_rows(table, churn)


def test_source_file_column_is_kept(churn):
    table = churn_rows({}, {"age": 5}).append_column(PATH_COLUMN, pa.array(["a.csv", "b.csv"]))
    out = check_rows(table, churn)
    assert out.column(PATH_COLUMN).to_pylist() == ["a.csv", "b.csv"]
    assert out.column(RULES_COLUMN).to_pylist() == ["", "age:min"]


# ----------------------------------------------------------------------------- unique


def checked_ids(ids: list, rules: list[str], arrow_type: pa.DataType | None = None) -> pa.Table:
    ids = pa.array(ids, type=arrow_type or pa.string())
    return pa.table({"id": ids, RULES_COLUMN: pa.array(rules, pa.string())})


def test_mark_duplicates_labels_every_copy_and_appends():
    batch = checked_ids(["a", "b", "a", "c", None], ["", "", "x:min", "", ""])
    out = mark_duplicates(batch, "id", ["a"])
    assert out.column(RULES_COLUMN).to_pylist() == ["id:unique", "", "x:min; id:unique", "", ""]
    assert out.column_names == batch.column_names


def test_mark_duplicates_without_duplicates_changes_nothing():
    batch = checked_ids(["a", "b"], ["", ""])
    assert mark_duplicates(batch, "id", []).equals(batch)


def test_mark_duplicates_on_an_int_column():
    batch = checked_ids([1, 2, 1], ["", "", ""], pa.int64())
    out = mark_duplicates(batch, "id", [1])
    assert out.column(RULES_COLUMN).to_pylist() == ["id:unique", "", "id:unique"]


# ----------------------------------------------------------------------------- only


def test_only_valid_keeps_valid_rows_without_bookkeeping(churn):
    table = churn_rows({"age": 20}, {"age": 5}, {"age": 40})
    checked = check_rows(table.append_column(PATH_COLUMN, pa.array(["f"] * 3)), churn)
    valid = only(checked, valid=True)
    assert valid.column_names == list(churn.columns)
    assert valid.column("age").to_pylist() == [20, 40]
    invalid = only(checked, valid=False)
    assert invalid.column("age").to_pylist() == [5]
    assert invalid.column(RULES_COLUMN).to_pylist() == ["age:min"]
    assert PATH_COLUMN in invalid.column_names


# ----------------------------------------------------------------------------- summary


def rules_table(rules: list[str], ts: bool = False) -> pa.Table:
    cols = {"i": list(range(len(rules))), RULES_COLUMN: rules}
    if ts:
        cols["t"] = pa.array([datetime(2024, 1, 1 + i) for i in range(len(rules))])
    return pa.table(cols)


def test_summarize_counts_rules_and_keeps_examples():
    batch = rules_table(["", "a:min", "a:min; b:regex", "b:regex", "", "a:min"], ts=True)
    s = _summarize(batch, examples=2)
    assert s["rows"] == 6
    assert s["invalid"] == 4
    assert s["counts"] == {"a:min": 3, "b:regex": 2}
    assert [e["i"] for e in s["examples"]["a:min"]] == [1, 2]  # capped at 2
    assert [e["i"] for e in s["examples"]["b:regex"]] == [2, 3]
    assert s["examples"]["a:min"][0]["t"] == "2024-01-02T00:00:00"  # JSON-ready
    assert s["examples"]["a:min"][0][RULES_COLUMN] == "a:min"


def test_summarize_of_a_clean_or_empty_batch():
    assert _summarize(rules_table(["", ""]), 5) == {
        "rows": 2,
        "invalid": 0,
        "counts": {},
        "examples": {},
    }
    assert _summarize(rules_table([]), 5)["rows"] == 0


def test_merge_adds_counts_and_caps_examples():
    a = _summarize(rules_table(["a:min", "a:min", ""]), 3)
    b = _summarize(rules_table(["a:min", "b:max", "a:min", "a:min"]), 3)
    m = _merge(a, b, 3)
    assert m["rows"] == 7
    assert m["invalid"] == 6
    assert m["counts"] == {"a:min": 5, "b:max": 1}
    assert len(m["examples"]["a:min"]) == 3
    assert [e["i"] for e in m["examples"]["a:min"]] == [0, 1, 0]  # a's first, then b's
    assert [e["i"] for e in m["examples"]["b:max"]] == [1]
    assert a["counts"] == {"a:min": 2}  # inputs are not mutated


def test_summaries_of_slices_merge_to_the_whole():
    rules = ["", "a:min", "a:min; b:regex", "", "b:regex", "c:type", "a:min", ""]
    whole = _summarize(rules_table(rules), 10)
    table = rules_table(rules)
    parts = [_summarize(table.slice(i, 3), 10) for i in range(0, len(rules), 3)]
    merged = parts[0]
    for p in parts[1:]:
        merged = _merge(merged, p, 10)
    assert (merged["rows"], merged["invalid"], merged["counts"]) == (
        whole["rows"],
        whole["invalid"],
        whole["counts"],
    )
    assert {k: len(v) for k, v in merged["examples"].items()} == {
        "a:min": 3,
        "b:regex": 2,
        "c:type": 1,
    }


# ----------------------------------------------------------------------------- report


def report(**kw) -> ValidationReport:
    base = dict(
        dataset="churn",
        rows=200,
        invalid_rows=30,
        rules=[RuleResult("age", "min", 20), RuleResult("contract", "allowed", 10)],
        max_invalid_fraction=0.05,
        on_invalid="quarantine",
        passed=False,
        report_path="/r/report.json",
        quarantine_path="/r/quarantine",
    )
    return ValidationReport(**{**base, **kw})


def test_report_fractions_and_counts():
    r = report()
    assert r.valid_rows == 170
    assert r.invalid_fraction == pytest.approx(0.15)
    assert r.counts() == {"age:min": 20, "contract:allowed": 10}
    d = r.to_dict()
    assert d["valid_rows"] == 170 and d["invalid_fraction"] == 0.15
    assert d["rules"][0] == {"column": "age", "rule": "min", "rows": 20, "examples": []}
    assert report(rows=0, invalid_rows=0).invalid_fraction == 0.0


def test_failure_message_names_the_policy_key_and_rules():
    msg = failure_message(report())
    assert "dataset.validation.max_invalid_fraction=0.05" in msg
    assert "30 of 200 rows" in msg
    assert "15.00%" in msg
    assert "age:min (20 rows)" in msg and "contract:allowed (10 rows)" in msg
    assert "/r/report.json" in msg and "/r/quarantine" in msg

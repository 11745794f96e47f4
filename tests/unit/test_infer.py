"""keel init's inference: one test per rule over small Arrow tables, then what it infers for
each of the hand-made files in tests/data/own (read as text with pyarrow, no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from keel.config.schema import (
    NULL_VALUES,
    ColumnSpec,
    ColumnType,
    DatePart,
    Impute,
    Scale,
    SourceConfig,
    SourceFormat,
    Task,
    Transform,
)
from keel.data import infer as rules
from keel.data.sources import header
from keel.errors import ConfigError, DataError

OWN = Path(__file__).resolve().parents[1] / "data" / "own"


def profile_of(values: list, name: str = "x", null_values=NULL_VALUES) -> rules.Profile:
    return rules.profile(pa.table({name: values}), name, rules.column_key(name), null_values)


def numbers(name: str, values, **kw) -> rules.Profile:
    return profile_of([str(v) for v in values], name, **kw)


def read_own(name: str) -> pa.Table:
    path = OWN / f"{name}.csv"
    names = header(str(path), SourceFormat.csv)
    return pacsv.read_csv(path, convert_options=rules.csv_text_options(names, SourceConfig()))


def infer_own(name: str, target: str, task: Task | None = None) -> rules.Inference:
    source = SourceConfig(format=SourceFormat.csv, path=f"tests/data/own/{name}.csv")
    return rules.infer(read_own(name), target=target, name=name, source=source, task=task)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Flipper Length (mm)", "flipper_length_mm"),
        ("userId", "user_id"),
        ("CustomerID", "customer_id"),
        ("HTTPStatus code", "http_status_code"),
        ("already_snake", "already_snake"),
        ("2nd place", "col_2nd_place"),
        ("class", "col_class"),
        ("Café Name", "cafe_name"),
        ("%", "column"),
    ],
)
def test_column_key_is_snake_case_starting_with_a_letter(name, key):
    assert rules.column_key(name) == key


def test_column_keys_are_unique_in_file_order():
    assert rules.column_keys(["A b", "a_b", "a-b", "a_b_2"]) == {
        "A b": "a_b",
        "a_b": "a_b_2",
        "a-b": "a_b_3",
        "a_b_2": "a_b_2_2",
    }


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("data/My Rentals.v2.csv", "my_rentals"),
        ("s3://bucket/sales/", "sales"),
        ("/tmp/penguins.csv", "penguins"),
    ],
)
def test_dataset_name_from_the_file_stem(path, name):
    assert rules.dataset_name(path) == name


def test_check_name_refuses_what_cannot_name_a_file():
    assert rules.check_name("my-data_2") == "my-data_2"
    with pytest.raises(ConfigError, match="--name"):
        rules.check_name("my data")


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.csv", SourceFormat.csv),
        ("s3://b/a.PARQUET", SourceFormat.parquet),
        ("a.jsonl", SourceFormat.json),
        ("a.json", SourceFormat.json),
        ("dir/", None),
    ],
)
def test_format_from_suffix(path, fmt):
    assert rules.format_from_suffix(path) == fmt


# ----------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["yes", "no"], True),
        (["True", "FALSE"], True),
        (["y", "n", "Y"], True),
        (["t", "f"], True),
        (["1", "0", "yes"], True),
        (["0", "1"], False),  # a 0/1 column stays an int (a 0/1 target is a label)
        (["yes", "maybe"], False),
    ],
)
def test_looks_bool(values, expected):
    assert rules.looks_bool(values) is expected


def test_looks_int_and_float():
    assert rules.looks_int(["12", "-3", " 7"])
    assert not rules.looks_int(["1.0", "2"])
    assert rules.looks_float(["1.5", "1e3", "2"])
    assert not rules.looks_float(["1.5", "inf"])
    assert not rules.looks_float(["1.5", "abc"])


def test_iso_timestamps_with_or_without_a_zone():
    assert rules.looks_iso_timestamp(["2024-06-01T10:00:00Z", "2024-06-01 10:00", "2024-06-02"])
    assert not rules.looks_iso_timestamp(["06/13/2024 10:00"])


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["02/01/2023 19:00", "07/13/2023 13:00"], "%m/%d/%Y %H:%M"),
        (["13/01/2023", "02/01/2023"], "%d/%m/%Y"),  # day 13: not month-first
        (["01/02/2023"], "%m/%d/%Y"),  # ambiguous: month-first wins
        (["2023/01/02 10:00:00"], "%Y/%m/%d %H:%M:%S"),
        (["13/01/2023", "hello"], None),
    ],
)
def test_timestamp_format_parses_every_value(values, fmt):
    assert rules.timestamp_format(values) == fmt


@pytest.mark.parametrize(
    ("distinct", "present", "expected"),
    [(3, 420, True), (50, 1000, True), (51, 10_000, False), (30, 40, False), (0, 10, False)],
)
def test_category_is_few_repeated_values(distinct, present, expected):
    assert rules.is_category(distinct, present) is expected


def test_text_type_order_bool_int_float_timestamp_category_string():
    assert rules.text_type(["no", "yes"], 10) == (ColumnType.bool, None)
    assert rules.text_type(["1", "2"], 10) == (ColumnType.int, None)
    assert rules.text_type(["1.5", "2"], 10) == (ColumnType.float, None)
    assert rules.text_type(["2024-01-01"], 10) == (ColumnType.timestamp, None)
    assert rules.text_type(["1/13/2024"], 10) == (ColumnType.timestamp, "%m/%d/%Y")
    assert rules.text_type(["a", "b"], 10) == (ColumnType.category, None)
    assert rules.text_type(["a", "b", "c"], 4) == (ColumnType.string, None)


def test_quoted_numbers_are_numbers():
    table = pacsv.read_csv(
        pa.py_buffer(b'"x","y"\n"1.5","2"\n"3","4"\n'),
        convert_options=rules.csv_text_options(["x", "y"], SourceConfig()),
    )
    assert rules.profile(table, "x", "x", NULL_VALUES).type == ColumnType.float
    assert rules.profile(table, "y", "y", NULL_VALUES).type == ColumnType.int


def test_typed_columns_keep_their_arrow_type():
    table = pa.table({"i": [1, 2], "f": [0.5, 1.0], "b": [True, False], "s": ["3", "4"]})
    kinds = {n: rules.profile(table, n, n, NULL_VALUES).type for n in table.column_names}
    assert kinds == {
        "i": ColumnType.int,
        "f": ColumnType.float,
        "b": ColumnType.bool,
        "s": ColumnType.int,  # text is read by the text rules
    }
    with pytest.raises(DataError, match="single values"):
        rules.arrow_type(pa.list_(pa.int64()), "tags")


def test_null_markers_are_nulls_in_text():
    p = profile_of(["1", "NA", "3", "", None])
    assert (p.type, p.nulls, p.nullable, p.distinct) == (ColumnType.int, 3, True, 2)
    assert profile_of(["1", "-", "3"], null_values=["-"]).type == ColumnType.int


def test_null_spellings_in_any_case_as_the_reader_takes_them():
    source = SourceConfig(format=SourceFormat.json, path="x.json", null_values=["NA"])
    table = pa.table({"x": ["1", "na", "Na", "3"], "y": ["a", "b", "a", "b"]})
    inf = rules.infer(table, target="y", name="x", source=source)
    assert inf.dataset.columns["x"].type == ColumnType.int
    assert inf.dataset.columns["x"].nullable


def test_all_null_column_is_nullable_text():
    p = profile_of([None, None], "empty")
    assert (p.type, p.nullable, p.present) == (ColumnType.string, True, 0)
    assert rules.choose_feature(p).spec is None


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("low", "high", "integral", "expected"),
    [
        (15, 100, True, (6, 109)),  # 10% of 85 = 8.5 each side, ints rounded outward
        (2007, 2009, True, (2006, 2010)),
        (0.03, 29.36, False, (0.0, 32.3)),  # never below 0 when nothing seen was
        (-8.1, 30.1, False, (-12.0, 34.0)),  # 3 significant digits of the widened range
        (0.00075, 0.00767, False, (0.00005, 0.00837)),
        (5, 5, True, (4, 6)),  # one value: 10% of itself
    ],
)
def test_widen_by_a_margin_rounded_outward(low, high, integral, expected):
    lo, hi = rules.widen(low, high, integral)
    assert (lo, hi) == pytest.approx(expected)
    assert lo <= low and hi >= high


def test_skewness():
    rng = np.random.default_rng(0)
    assert rules.skewness(rng.exponential(size=5000)) > 1.5
    assert abs(rules.skewness(rng.normal(size=5000))) < 0.2
    assert rules.skewness(np.ones(10)) == 0.0


def test_column_spec_carries_range_allowed_and_the_file_name():
    spec = rules.column_spec(numbers("Flipper Length (mm)", [180, 200, "NA"]))
    assert spec == ColumnSpec(
        type=ColumnType.int, nullable=True, min=178, max=202, source="Flipper Length (mm)"
    )
    spec = rules.column_spec(profile_of(["b", "a", "b", "a"], "kind"))
    assert (spec.type, spec.allowed, spec.source) == (ColumnType.category, ["a", "b"], None)


# ----------------------------------------------------------------------------- roles


def test_id_is_unique_and_id_like():
    assert rules.is_id(numbers("record_id", range(100)))
    assert rules.is_id(numbers("userId", range(100)))
    assert not rules.is_id(numbers("mass", range(100)))  # unique numbers, not named like an id
    assert rules.is_id(profile_of([f"u{i}" for i in range(100)], "email"))  # unique text
    assert not rules.is_id(numbers("order_id", [1, 1, 2]))  # repeats
    assert not rules.is_id(profile_of(["a", None, "b"], "key"))  # missing


def test_at_most_one_id_preferring_the_named_one():
    profiles = [
        profile_of([f"u{i}" for i in range(50)], "email"),
        numbers("order_id", range(50)),
        numbers("row_key", range(50)),
    ]
    assert rules.find_id(profiles, target="y") == "order_id"
    assert rules.find_id(profiles[1:2], target="order_id") is None


def test_first_timestamp_column_that_is_not_the_target():
    profiles = [
        numbers("a", [1, 2]),
        profile_of(["2024-01-01", "2024-01-02"], "created"),
        profile_of(["2024-02-01", "2024-02-02"], "updated"),
    ]
    assert rules.find_timestamp(profiles, target="a") == "created"
    assert rules.find_timestamp(profiles, target="created") == "updated"


def test_slices_are_small_categories_at_most_two():
    cats = [profile_of(list("abab" * 5), n) for n in ("p", "q", "r")]
    many = profile_of([str(i % 12) + "x" for i in range(120)], "wide")
    assert rules.find_slices([many, *cats], exclude=["p"]) == ["q", "r"]


def test_target_by_file_name_or_key():
    profiles = [numbers("Flipper Length (mm)", [1, 2])]
    assert rules.find_target(profiles, "flipper_length_mm") is profiles[0]
    assert rules.find_target(profiles, "Flipper Length (mm)") is profiles[0]
    with pytest.raises(ConfigError, match="not a column"):
        rules.find_target(profiles, "nope")


# ----------------------------------------------------------------------------- task


@pytest.mark.parametrize(
    ("profile", "task"),
    [
        (profile_of(["M", "B", "B"]), Task.binary_classification),
        (numbers("y", [0, 1, 1]), Task.binary_classification),
        (profile_of(["a", "b", "c"] * 2), Task.multiclass_classification),
        (numbers("y", [1, 2, 3, 4, 5] * 3), Task.multiclass_classification),
        (numbers("y", range(100)), Task.regression),  # many whole numbers: counts
        (numbers("y", [0.5, 1.5, 2.5]), Task.regression),
    ],
)
def test_task_from_the_target(profile, task):
    assert rules.infer_task(profile) is task


def test_one_valued_target_is_refused():
    with pytest.raises(DataError, match="1 distinct"):
        rules.infer_task(profile_of(["a", "a"]))


def test_task_override_must_fit_the_target():
    text = profile_of(["a", "b", "c"])
    with pytest.raises(DataError, match="numeric target"):
        rules.check_task(text, Task.regression)
    with pytest.raises(DataError, match="2 classes"):
        rules.check_task(text, Task.binary_classification)
    with pytest.raises(DataError, match="class labels"):
        rules.check_task(numbers("y", [0.5, 1.5]), Task.binary_classification)
    rules.check_task(numbers("y", [1, 2, 3]), Task.regression)
    assert rules.parse_task("binary") is Task.binary_classification
    with pytest.raises(ConfigError, match="choose one of"):
        rules.parse_task("ranking")


def test_target_spec_text_is_a_category_and_zero_one_an_int():
    spec = rules.target_spec(profile_of(["M", "B", "M"]), Task.binary_classification)
    assert spec == ColumnSpec(type=ColumnType.category, allowed=["B", "M"])
    spec = rules.target_spec(numbers("y", [0, 1, 1]), Task.binary_classification)
    assert spec == ColumnSpec(type=ColumnType.int, min=0, max=1)
    spec = rules.target_spec(numbers("y", [10, 20, "NA"]), Task.regression)
    assert (spec.type, spec.nullable, spec.min, spec.max) == (ColumnType.int, False, 9, 21)


# ----------------------------------------------------------------------------- features


def feature(profile: rules.Profile):
    return rules.choose_feature(profile).spec


def test_numbers_are_standardized_with_median_for_missing():
    spec = feature(numbers("x", [1, 5, 3, 2, "NA"]))
    assert (spec.transform, spec.input, spec.impute) == (Transform.standardize, "x", Impute.median)
    assert feature(numbers("x", [-1, 5, 3])).impute == Impute.none


def test_skewed_positive_numbers_get_log1p():
    values = np.random.default_rng(0).exponential(100, size=500).round(2)
    spec = feature(numbers("amount", values))
    assert (spec.transform, spec.scale) == (Transform.log1p, Scale.standardize)
    shifted = numbers("delta", values - 50)  # negatives: log1p would floor them at 0
    assert feature(shifted).transform == Transform.standardize


def test_two_valued_numbers_are_used_as_they_are():
    assert feature(numbers("flag", [0, 1, 0, 0])).transform == Transform.identity


def test_constant_columns_are_not_features():
    choice = rules.choose_feature(numbers("x", [3, 3, 3]))
    assert choice.spec is None and "one value" in choice.reason


def test_booleans_are_identity_most_frequent_when_missing():
    spec = feature(profile_of(["yes", "no", None]))
    assert (spec.transform, spec.impute) == (Transform.identity, Impute.most_frequent)


def test_small_categories_one_hot_missing_as_unknown():
    spec = feature(profile_of(["a", "b", "c"] * 4))
    assert (spec.transform, spec.max_categories, spec.impute) == (Transform.one_hot, 3, Impute.none)
    spec = feature(profile_of(["a", "b", "c", None] * 4))
    assert (spec.max_categories, spec.impute, spec.fill_value) == (4, Impute.constant, "unknown")


def test_larger_categories_and_repeated_text_are_hashed():
    spec = feature(profile_of([f"c{i % 30}" for i in range(300)]))
    assert (spec.transform, spec.buckets) == (Transform.hashed, 32)
    spec = feature(profile_of([f"city{i % 200}" for i in range(2000)]))  # text, repeated
    assert (spec.transform, spec.buckets) == (Transform.hashed, 256)
    assert rules.hash_buckets(3) == 16 and rules.hash_buckets(100_000) == 1024


def test_mostly_unique_text_is_not_a_feature():
    choice = rules.choose_feature(profile_of([f"comment {i}" for i in range(100)]))
    assert choice.spec is None and "unique text" in choice.reason


def test_timestamps_give_the_date_parts_that_vary():
    spec = feature(profile_of(["2024-01-01 10:00", "2024-03-05 10:00", "2024-03-06 10:00"]))
    assert spec.transform == Transform.date_parts
    assert spec.parts == [DatePart.month, DatePart.dayofweek]  # the hour never changes
    assert spec.cyclic  # December beside January, Sunday beside Monday
    same_day = rules.choose_feature(profile_of(["2024-01-01", "2024-01-01"]))
    assert same_day.spec is None


# ----------------------------------------------------------------------------- floor, serving


def test_macro_f1_baseline_of_the_majority_class():
    assert rules.macro_f1_baseline(0.5, 2) == pytest.approx(1 / 3)
    assert rules.macro_f1_baseline(1 / 3, 3) == pytest.approx(1 / 6)


def test_quality_floors_sit_above_the_baselines():
    binary = rules.quality_floor(Task.binary_classification, profile_of(["a", "b"]))
    assert (binary.metric, binary.value, binary.baseline) == ("roc_auc", 0.65, 0.5)
    regression = rules.quality_floor(Task.regression, numbers("y", [1.5, 2.5]))
    assert (regression.metric, regression.value, regression.baseline) == ("r2", 0.3, 0.0)
    target = profile_of(["a"] * 6 + ["b"] * 2 + ["c"] * 2)  # p = 0.6, k = 3
    multi = rules.quality_floor(Task.multiclass_classification, target)
    baseline = 2 * 0.6 / 1.6 / 3
    assert multi.metric == "f1"
    assert multi.baseline == pytest.approx(baseline, abs=1e-4)
    assert multi.value == int((baseline + 0.3 * (1 - baseline)) * 100) / 100  # rounded down


def test_served_model_post_processing_by_task():
    two, five = profile_of(["a", "b"]), profile_of(list("abcde"))
    binary = rules.served_model(Task.binary_classification, two)
    assert (binary.version, binary.postprocess.threshold) == ("production", 0.5)
    assert rules.served_model(Task.multiclass_classification, five).postprocess.top_k == 3
    assert rules.served_model(Task.multiclass_classification, two).postprocess.top_k == 2
    assert rules.served_model(Task.regression, two).postprocess.threshold is None


def test_empty_sample_is_refused():
    source = SourceConfig(format=SourceFormat.csv, path="x.csv")
    with pytest.raises(DataError, match="no rows"):
        rules.infer(pa.table({"y": pa.array([], pa.string())}), target="y", name="x", source=source)


# ----------------------------------------------------------------------------- own files


def test_penguins_multiclass_with_na_and_a_spaced_name():
    inf = infer_own("penguins", "species")
    ds = inf.dataset
    assert ds.task == Task.multiclass_classification
    assert ds.columns["species"] == ColumnSpec(
        type=ColumnType.category, allowed=["Adelie", "Chinstrap", "Gentoo"]
    )
    flipper = ds.columns["flipper_length_mm"]
    assert (flipper.type, flipper.nullable, flipper.source) == (
        ColumnType.int,
        True,
        "Flipper Length (mm)",
    )
    assert flipper.min <= 169 and flipper.max >= 231
    nullable = {k for k, c in ds.columns.items() if c.nullable}
    assert nullable == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    }
    assert ds.columns["island"].allowed == ["Biscoe", "Dream", "Torgersen"]
    assert ds.columns["year"].type == ColumnType.int
    assert (ds.id_column, ds.timestamp_column) == (None, None)
    assert ds.slices == ["island", "sex"]
    specs = inf.features.columns
    assert "species" not in specs
    assert specs["flipper_length_mm"].impute == Impute.median
    assert specs["sex"].transform == Transform.one_hot and specs["sex"].fill_value == "unknown"
    assert inf.floor.metric == "f1" and inf.floor.baseline < inf.floor.value < 0.6
    assert inf.served.postprocess.top_k == 3


def test_tumors_binary_text_target_without_id_and_quoted_numbers():
    inf = infer_own("tumors", "diagnosis")
    ds = inf.dataset
    assert ds.task == Task.binary_classification
    assert ds.columns["diagnosis"] == ColumnSpec(type=ColumnType.category, allowed=["B", "M"])
    numeric = [k for k, c in ds.columns.items() if c.type == ColumnType.float]
    assert len(numeric) == 30  # every cell quoted, numbers still numbers
    assert ds.id_column is None and ds.slices == []
    assert all(c.min >= 0 for k, c in ds.columns.items() if k in numeric)  # none seen below 0
    assert len(inf.features.columns) == 30
    assert (inf.floor.metric, inf.floor.value) == ("roc_auc", 0.65)
    assert inf.served.postprocess.threshold == 0.5
    assert any("no id column" in n for n in inf.notes)


def test_rentals_regression_us_timestamps_booleans_and_an_id():
    inf = infer_own("rentals", "rentals")
    ds = inf.dataset
    assert ds.task == Task.regression
    assert ds.id_column == "record_id"
    assert ds.columns["record_id"] == ColumnSpec(type=ColumnType.int, unique=True)
    assert ds.timestamp_column == "timestamp"
    assert ds.columns["timestamp"].format == "%m/%d/%Y %H:%M"
    assert ds.columns["holiday"].type == ColumnType.bool  # yes/no
    assert ds.columns["workingday"].type == ColumnType.bool  # true/false
    assert ds.columns["season"].allowed == ["fall", "spring", "summer", "winter"]
    assert ds.slices == ["season"]
    specs = inf.features.columns
    assert "record_id" not in specs and "rentals" not in specs
    assert specs["timestamp"].parts == [DatePart.month, DatePart.dayofweek, DatePart.hour]
    assert specs["holiday"].transform == Transform.identity
    assert (inf.floor.metric, inf.floor.value) == ("r2", 0.3)
    assert inf.served.postprocess.threshold is None and inf.served.postprocess.top_k is None

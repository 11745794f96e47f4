"""FeaturePipeline on local data: exact transform outputs, fitting, state, and the real configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from keel.config import load
from keel.config.schema import DatePart, FeatureSpec, GroupStat, Impute, Scale, Transform
from keel.errors import ConfigError, FeatureError
from keel.features import FeaturePipeline
from keel.features.pipeline import FORMAT
from keel.features.steps import part_names

T = Transform
NAN = np.nan

# x has one missing value; its finite values [1, 2, 3, 4, 10] have mean 4 and variance 10.
FRAME = pd.DataFrame(
    {
        "x": [1.0, 2.0, 3.0, 4.0, 10.0, NAN],
        "y": [2.0, 0.0, 1.0, 4.0, 5.0, 1.0],
        "c": ["a", "b", "a", "c", "a", None],
        "g": ["u", "u", "v", "v", "w", "v"],
        "ts": [
            pd.Timestamp("2024-01-06"),  # Saturday
            pd.Timestamp("2024-02-29 13:30"),  # Thursday, leap day
            pd.Timestamp("2024-03-04"),  # Monday
            pd.Timestamp("2023-07-04"),  # Tuesday
            pd.Timestamp("2024-12-31"),  # Tuesday, day 366
            pd.NaT,
        ],
    }
)
CLEAN = FRAME.iloc[:5]
HUNDRED = pd.DataFrame({"x": np.random.default_rng(0).permutation(np.arange(1.0, 101.0))})

ALL = {
    "identity": FeatureSpec(transform=T.identity, input="x"),
    "standardize": FeatureSpec(transform=T.standardize, input="x"),
    "minmax": FeatureSpec(transform=T.minmax, input="x"),
    "log1p": FeatureSpec(transform=T.log1p, input="x", scale=Scale.standardize),
    "clip": FeatureSpec(transform=T.clip, input="x", lower=2, upper=4, scale=Scale.minmax),
    "qclip": FeatureSpec(transform=T.clip, input="x", lower_quantile=0.2, upper_quantile=0.8),
    "bucket": FeatureSpec(transform=T.bucketize, input="x", boundaries=[2, 4]),
    "qbucket": FeatureSpec(transform=T.bucketize, input="x", bins=3, impute=Impute.median),
    "one_hot": FeatureSpec(transform=T.one_hot, input="c", max_categories=2),
    "ordinal": FeatureSpec(transform=T.ordinal, input="c", categories=["c", "b", "a"]),
    "fitted_ordinal": FeatureSpec(transform=T.ordinal, input="c", scale=Scale.minmax),
    "hashed": FeatureSpec(transform=T.hashed, input="c", buckets=4),
    "dates": FeatureSpec(transform=T.date_parts, input="ts", parts=list(DatePart)),
    "cycles": FeatureSpec(transform=T.date_parts, input="ts", parts=list(DatePart), cyclic=True),
    "ratio": FeatureSpec(transform=T.ratio, inputs=["x", "y"], impute=Impute.mean),
    "difference": FeatureSpec(transform=T.difference, inputs=["x", "y"], scale=Scale.standardize),
    "group": FeatureSpec(transform=T.group_stat, input="x", by="g", scale=Scale.standardize),
}


def fit(spec: FeatureSpec, data=FRAME, **kw) -> FeaturePipeline:
    return FeaturePipeline({"f": spec}).fit(data, **kw)


def out(spec: FeatureSpec, data=FRAME, at=None) -> np.ndarray:
    """Fit one feature named `f` on data, transform `at` (default: data); float64 for comparing."""
    return fit(spec, data).transform(data if at is None else at).astype(np.float64)


def col(spec: FeatureSpec, data=FRAME, at=None) -> list[float]:
    return out(spec, data, at)[:, 0].tolist()


def approx(values, rel=1e-6, abs=1e-6):
    return pytest.approx(values, rel=rel, abs=abs)


def assert_same_state(a, b, tol=1e-9):
    """Equal JSON states: identical structure and strings, floats within tol."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (a, b)
        for k in a:
            assert_same_state(a[k], b[k], tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y, tol)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=tol, abs=tol)
    else:
        assert a == b


@pytest.fixture(scope="module")
def pipeline() -> FeaturePipeline:
    return FeaturePipeline(ALL).fit(FRAME)


# ----------------------------------------------------------------------------- numeric transforms


def test_identity_fills_missing_with_the_training_mean():
    assert col(FeatureSpec(transform=T.identity, input="x")) == [1, 2, 3, 4, 10, 4]


def test_standardize_exact_values():
    x = CLEAN["x"].to_numpy()
    got = col(FeatureSpec(transform=T.standardize, input="x"), CLEAN)
    assert got == approx(((x - 4) / np.sqrt(10)).tolist())
    assert np.mean(got) == approx(0) and np.std(got) == approx(1)


def test_standardize_with_missing_values_centres_the_filled_column():
    got = np.array(col(FeatureSpec(transform=T.standardize, input="x")))
    assert got[5] == approx(0)  # missing -> training mean -> 0
    assert got.mean() == approx(0) and got.std() == approx(1)
    filled = np.array([1, 2, 3, 4, 10, 4.0])
    assert got.tolist() == approx(((filled - filled.mean()) / filled.std()).tolist())


def test_standardize_of_a_constant_column_is_zero():
    data = pd.DataFrame({"x": [3.0, 3.0, 3.0]})
    assert col(FeatureSpec(transform=T.standardize, input="x"), data) == [0, 0, 0]


def test_minmax_maps_training_range_to_unit_interval():
    got = col(FeatureSpec(transform=T.minmax, input="x"))
    assert got == approx([0, 1 / 9, 2 / 9, 3 / 9, 1, 3 / 9])
    new = pd.DataFrame({"x": [-8.0, 5.5, 19.0]})
    assert col(FeatureSpec(transform=T.minmax, input="x"), at=new) == approx([-1, 0.5, 2])


def test_log1p_floors_negatives_at_zero():
    data = pd.DataFrame({"x": [-3.0, 0.0, 1.0, np.e - 1, 99.0]})
    got = col(FeatureSpec(transform=T.log1p, input="x"), data)
    assert got == approx([0, 0, np.log(2), 1, np.log(100)])


def test_log1p_then_standardize():
    got = np.array(col(FeatureSpec(transform=T.log1p, input="x", scale=Scale.standardize), CLEAN))
    logs = np.log1p(CLEAN["x"].to_numpy())
    assert got.tolist() == approx(((logs - logs.mean()) / logs.std()).tolist())


def test_clip_fixed_bounds():
    spec = FeatureSpec(transform=T.clip, input="x", lower=2, upper=4)
    # the missing row gets the mean of the clipped training values (2+2+3+4+4)/5
    assert col(spec) == [2, 2, 3, 4, 4, 3]
    assert col(spec, at=pd.DataFrame({"x": [-100.0, 100.0]})) == [2, 4]


def test_clip_one_sided():
    spec = FeatureSpec(transform=T.clip, input="x", upper=3)
    assert col(spec, CLEAN) == [1, 2, 3, 3, 3]


def test_clip_quantile_bounds():
    spec = FeatureSpec(transform=T.clip, input="x", lower_quantile=0.1, upper_quantile=0.9)
    fitted = fit(spec, HUNDRED)
    lo, hi = np.quantile(HUNDRED["x"], [0.1, 0.9], method="inverted_cdf")
    assert fitted.state["f"][0] == {"lower": lo, "upper": hi} == {"lower": 10.0, "upper": 90.0}
    at = pd.DataFrame({"x": [-5.0, 50.0, 1000.0]})
    assert fitted.transform(at)[:, 0].tolist() == [10, 50, 90]


def test_ratio_zero_denominator_is_filled_not_inf():
    got = col(FeatureSpec(transform=T.ratio, inputs=["x", "y"]))
    # x / y = [0.5, x/0, 3, 1, 2, nan/1]: the two undefined rows get the mean of the rest
    assert got == approx([0.5, 1.625, 3, 1, 2, 1.625])
    assert np.isfinite(got).all()


def test_difference():
    got = col(FeatureSpec(transform=T.difference, inputs=["x", "y"]))
    assert got == approx([-1, 2, 2, 0, 5, 1.6])


# ----------------------------------------------------------------------------- bucketize


def test_bucketize_boundaries_one_hot_and_names():
    fitted = fit(FeatureSpec(transform=T.bucketize, input="x", boundaries=[2, 4]))
    assert fitted.output_columns == ["f[-inf,2)", "f[2,4)", "f[4,inf)"]
    got = fitted.transform(FRAME)
    # buckets are closed on the left: 2 -> [2,4), 4 -> [4,inf); a missing value -> no bucket
    assert got.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_bucketize_quantile_bins():
    fitted = fit(FeatureSpec(transform=T.bucketize, input="x", bins=4), HUNDRED)
    expected = np.quantile(HUNDRED["x"], [0.25, 0.5, 0.75], method="inverted_cdf").tolist()
    assert fitted.state["f"][0]["boundaries"] == expected == [25, 50, 75]
    assert fitted.output_columns == ["f[-inf,25)", "f[25,50)", "f[50,75)", "f[75,inf)"]
    got = fitted.transform(HUNDRED)
    assert got.sum(axis=0).tolist() == [24, 25, 25, 26]
    assert (got.sum(axis=1) == 1).all()


# ----------------------------------------------------------------------------- categories


def test_one_hot_vocabulary_is_most_frequent_first():
    fitted = fit(FeatureSpec(transform=T.one_hot, input="c"))
    # a:3, then b:1 and c:1 tied -> by name; missing -> __other__
    assert fitted.output_columns == ["f=a", "f=b", "f=c", "f=__other__"]
    assert fitted.transform(FRAME).tolist() == [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 1, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 1],
    ]


def test_one_hot_max_categories_and_unknown_go_to_other():
    fitted = fit(FeatureSpec(transform=T.one_hot, input="c", max_categories=2))
    assert fitted.output_columns == ["f=a", "f=b", "f=__other__"]
    at = pd.DataFrame({"c": ["c", "never-seen", "b", None]})
    assert fitted.transform(at).tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_one_hot_min_frequency():
    fitted = fit(FeatureSpec(transform=T.one_hot, input="c", min_frequency=2))
    assert fitted.output_columns == ["f=a", "f=__other__"]


def test_one_hot_fixed_categories():
    fitted = fit(FeatureSpec(transform=T.one_hot, input="c", categories=["c", "a"]))
    assert fitted.output_columns == ["f=c", "f=a", "f=__other__"]
    assert fitted.transform(CLEAN).tolist() == [
        [0, 1, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 0, 0],
        [0, 1, 0],
    ]


def test_one_hot_of_numbers_uses_their_text():
    data = pd.DataFrame({"n": [3, 1, 3]})
    fitted = fit(FeatureSpec(transform=T.one_hot, input="n"), data)
    assert fitted.output_columns == ["f=3", "f=1", "f=__other__"]


def test_ordinal_given_order_and_unknown_is_filled():
    spec = FeatureSpec(transform=T.ordinal, input="c", categories=["c", "b", "a"])
    # codes a=2, b=1, c=0; missing/unseen -> mean of the training codes (2+1+2+0+2)/5
    assert col(spec) == approx([2, 1, 2, 0, 2, 1.4])
    at = pd.DataFrame({"c": ["zzz", "c", None]})
    assert col(spec, at=at) == approx([1.4, 0, 1.4])


def test_ordinal_fitted_order_is_sorted():
    fitted = fit(FeatureSpec(transform=T.ordinal, input="c"))
    assert fitted.state["f"][0] == {"categories": ["a", "b", "c"]}
    assert fitted.transform(CLEAN)[:, 0].tolist() == [0, 1, 0, 2, 0]


def test_hashed_is_pandas_hash_modulo_buckets():
    values = np.array(["a", "b", "c", "card", "paypal"], dtype=object)
    fitted = fit(FeatureSpec(transform=T.hashed, input="c", buckets=4))
    assert fitted.output_columns == ["f#0", "f#1", "f#2", "f#3"]
    got = fitted.transform(pd.DataFrame({"c": values}))
    expected = (pd.util.hash_array(values) % 4).astype(int)
    assert got.argmax(axis=1).tolist() == expected.tolist() == [0, 3, 0, 1, 1]
    assert (got.sum(axis=1) == 1).all()
    assert fitted.transform(pd.DataFrame({"c": [None]})).tolist() == [[0, 0, 0, 0]]


HASH_SCRIPT = """
import sys
import pandas as pd
from keel.config.schema import FeatureSpec, Transform
from keel.features import FeaturePipeline
p = FeaturePipeline({"f": FeatureSpec(transform=Transform.hashed, input="c", buckets=8)})
print(p.transform(pd.DataFrame({"c": sys.argv[1:]})).argmax(axis=1).tolist())
"""


def test_hashed_is_stable_across_processes():
    values = ["card", "paypal", "bank-transfer", "mailed-check", "unknown", "x"]
    p = FeaturePipeline({"f": FeatureSpec(transform=T.hashed, input="c", buckets=8)})
    here = p.transform(pd.DataFrame({"c": values})).argmax(axis=1).tolist()
    assert p.transform(pd.DataFrame({"c": values[::-1]})).argmax(axis=1).tolist() == here[::-1]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-c", HASH_SCRIPT, *values],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert json.loads(run.stdout) == here


# ----------------------------------------------------------------------------- dates, groups


def test_date_parts_values():
    fitted = fit(FeatureSpec(transform=T.date_parts, input="ts", parts=list(DatePart)))
    names = ["year", "month", "day", "dayofweek", "dayofyear", "hour", "is_weekend"]
    assert fitted.output_columns == [f"f.{p}" for p in names]
    rows = [
        [2024, 1, 6, 5, 6, 0, 1],
        [2024, 2, 29, 3, 60, 13, 0],
        [2024, 3, 4, 0, 64, 0, 0],
        [2023, 7, 4, 1, 185, 0, 0],
        [2024, 12, 31, 1, 366, 0, 0],
    ]
    got = fitted.transform(FRAME).astype(np.float64)
    assert got[:5].tolist() == rows
    assert got[5].tolist() == approx(np.mean(rows, axis=0).tolist())  # missing -> mean


def test_cyclic_date_parts_put_the_last_value_beside_the_first():
    spec = FeatureSpec(
        transform=T.date_parts, input="ts", parts=[DatePart.year, DatePart.hour], cyclic=True
    )
    fitted = fit(spec, CLEAN)
    assert fitted.output_columns == ["f.year", "f.hour_sin", "f.hour_cos"]  # a year has no cycle
    hours = pd.DataFrame({"ts": [f"2024-05-17T{h:02d}:00:00" for h in (0, 6, 12, 23)]})
    got = fitted.transform(hours).astype(np.float64)
    assert got[:, 0].tolist() == [2024] * 4
    midnight, six, noon, eleven = got[:, 1:]
    assert midnight == approx([0, 1], abs=1e-6) and six == approx([1, 0], abs=1e-6)
    assert noon == approx([0, -1], abs=1e-6)
    # 23:00 is one hour from midnight, as 01:00 would be; hour/23 put them at opposite ends
    assert np.linalg.norm(eleven - midnight) == approx(2 * np.sin(np.pi / 24), rel=1e-5)
    assert np.linalg.norm(eleven - midnight) < np.linalg.norm(six - midnight)


def test_cyclic_belongs_to_date_parts_only():
    with pytest.raises(ConfigError, match="only date_parts has cycles"):
        load(["features.columns.tenure.cyclic=true"])


def test_date_parts_from_iso_strings():
    spec = FeatureSpec(transform=T.date_parts, input="ts", parts=[DatePart.day, DatePart.hour])
    fitted = fit(spec, CLEAN)
    rows = pd.DataFrame({"ts": ["2024-05-17", "2024-05-18T10:00:00", "2024-05-19 23:59:00"]})
    assert fitted.transform(rows).tolist() == [[17, 0], [18, 10], [19, 23]]


def test_group_stat_mean_per_group_and_unseen_group_gets_overall():
    spec = FeatureSpec(transform=T.group_stat, input="x", by="g")
    fitted = fit(spec)
    # u: [1, 2] -> 1.5; v: [3, 4, missing] -> 3.5; w: [10] -> 10; all: 20 / 5
    assert fitted.state["f"][0] == {"groups": {"u": 1.5, "v": 3.5, "w": 10.0}, "default": 4.0}
    assert fitted.transform(FRAME)[:, 0].tolist() == [1.5, 1.5, 3.5, 3.5, 10, 3.5]
    at = pd.DataFrame({"x": [0.0, 0.0, 0.0], "g": ["new", None, "w"]})
    assert fitted.transform(at)[:, 0].tolist() == [4, 4, 10]


@pytest.mark.parametrize(
    ("stat", "groups", "overall"),
    [
        (GroupStat.std, {"u": 0.5, "v": 0.5, "w": 0.0}, np.sqrt(10)),
        (GroupStat.min, {"u": 1.0, "v": 3.0, "w": 10.0}, 1.0),
        (GroupStat.max, {"u": 2.0, "v": 4.0, "w": 10.0}, 10.0),
        (GroupStat.count, {"u": 2.0, "v": 2.0, "w": 1.0}, 5.0),
    ],
)
def test_group_stat_statistics(stat, groups, overall):
    state = fit(FeatureSpec(transform=T.group_stat, input="x", by="g", stat=stat)).state["f"][0]
    assert state["groups"] == approx(groups, rel=1e-9)
    assert state["default"] == approx(overall, rel=1e-9)


# ----------------------------------------------------------------------------- imputation


@pytest.mark.parametrize(
    ("impute", "fill_value", "data", "expected"),
    [
        (Impute.mean, None, FRAME, 4.0),
        (Impute.median, None, FRAME, 3.0),
        (Impute.most_frequent, None, pd.DataFrame({"x": [1.0, 2.0, 2.0, 7.0, NAN]}), 2.0),
        (Impute.constant, -1.5, FRAME, -1.5),
    ],
)
def test_numeric_imputation(impute, fill_value, data, expected):
    spec = FeatureSpec(transform=T.identity, input="x", impute=impute, fill_value=fill_value)
    got = col(spec, data)
    assert got[-1] == approx(expected)
    assert got[:-1] == data["x"].iloc[:-1].tolist()  # present values are kept


def test_imputed_values_feed_the_fitted_scaler():
    spec = FeatureSpec(transform=T.minmax, input="x", impute=Impute.constant, fill_value=-8)
    assert col(spec) == approx([0.5, 10 / 18, 11 / 18, 12 / 18, 1, 0])


@pytest.mark.parametrize(
    ("impute", "fill_value", "expected_columns", "missing_row"),
    [
        (Impute.constant, "unknown", ["f=a", "f=b", "f=c", "f=unknown", "f=__other__"], 3),
        (Impute.most_frequent, None, ["f=a", "f=b", "f=c", "f=__other__"], 0),
    ],
)
def test_categorical_imputation(impute, fill_value, expected_columns, missing_row):
    spec = FeatureSpec(transform=T.one_hot, input="c", impute=impute, fill_value=fill_value)
    fitted = fit(spec)
    assert fitted.output_columns == expected_columns
    assert fitted.transform(FRAME)[5].argmax() == missing_row


def test_most_frequent_does_not_depend_on_batching():
    # Ties (2.0 and 1.0 twice each; "b" and "a" twice each) must not be broken by batch order.
    data = pd.DataFrame({"x": [2.0, 2.0, 1.0, 1.0, NAN], "c": ["b", "b", "a", "a", None]})
    specs = {
        "x": FeatureSpec(transform=T.identity, input="x", impute=Impute.most_frequent),
        "c": FeatureSpec(transform=T.one_hot, input="c", impute=Impute.most_frequent),
    }
    whole = FeaturePipeline(specs).fit(data, batch_size=5).to_state()
    batched = FeaturePipeline(specs).fit(data, batch_size=2).to_state()
    assert_same_state(whole, batched)


# ----------------------------------------------------------------------------- robustness


def test_missing_values_and_unseen_categories_never_crash(pipeline):
    rows = [
        {"x": None, "y": None, "c": None, "g": None, "ts": None},
        {"x": 1e9, "y": 0.0, "c": "never-seen", "g": "never-seen", "ts": "2031-06-01"},
        {"x": -1e9, "y": -0.0, "c": "", "g": "", "ts": "not a date"},
    ]
    got = pipeline.transform(rows)
    assert got.shape == (3, len(pipeline.output_columns))
    assert np.isfinite(got).all()


def test_empty_batch_gives_empty_matrix(pipeline):
    got = pipeline.transform(pa.Table.from_pandas(FRAME.iloc[:0], preserve_index=False))
    assert got.shape == (0, len(pipeline.output_columns))


def test_output_is_float32_with_one_column_per_name(pipeline):
    got = pipeline.transform(FRAME)
    assert got.dtype == np.float32
    assert got.shape == (len(FRAME), len(pipeline.output_columns))
    assert len(set(pipeline.output_columns)) == len(pipeline.output_columns)


def test_input_columns(pipeline):
    # first appearance, in declaration order: ratio brings y, group_stat its `by` column g
    assert pipeline.input_columns == ["x", "c", "ts", "y", "g"]


def test_transform_before_fit_raises():
    p = FeaturePipeline({"f": FeatureSpec(transform=T.standardize, input="x")})
    assert not p.is_fitted
    with pytest.raises(FeatureError, match="fit"):
        p.transform(FRAME)
    with pytest.raises(FeatureError):
        p.to_state()


@pytest.mark.parametrize("drop", ["x", "g"])
def test_missing_input_column_raises_naming_it(pipeline, drop):
    with pytest.raises(FeatureError, match=f"'{drop}'"):
        pipeline.transform(FRAME.drop(columns=[drop]))


def test_fit_on_empty_data_raises():
    with pytest.raises(FeatureError, match="empty"):
        fit(FeatureSpec(transform=T.standardize, input="x"), FRAME.iloc[:0])


# ----------------------------------------------------------------------------- fitting in batches


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_fitting_in_batches_gives_the_same_state(pipeline, batch_size):
    batched = FeaturePipeline(ALL).fit(FRAME, batch_size=batch_size)
    assert_same_state(pipeline.to_state(), batched.to_state())


def test_fitting_a_pyarrow_table_equals_a_dataframe(pipeline):
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    assert_same_state(pipeline.to_state(), FeaturePipeline(ALL).fit(table).to_state())


# ----------------------------------------------------------------------------- state


def test_state_json_round_trip(pipeline):
    state = pipeline.to_state()
    assert state["format"] == FORMAT
    assert state["output_columns"] == pipeline.output_columns
    text = json.dumps(state, allow_nan=False)
    back = FeaturePipeline.from_state(json.loads(text))
    assert back.is_fitted
    assert back.specs == pipeline.specs
    assert back.output_columns == pipeline.output_columns
    assert np.array_equal(back.transform(FRAME), pipeline.transform(FRAME))
    assert back.to_state() == state


def test_save_and_load(tmp_path, pipeline):
    path = str(tmp_path / "run" / "features.json")
    pipeline.save(path)
    assert json.loads((tmp_path / "run" / "features.json").read_text())["format"] == FORMAT
    back = FeaturePipeline.load(path)
    assert np.array_equal(back.transform(FRAME), pipeline.transform(FRAME))


@pytest.mark.parametrize("fmt", [None, "keel.features/0", "something-else"])
def test_from_state_rejects_a_wrong_format(pipeline, fmt):
    state = {**pipeline.to_state(), "format": fmt}
    with pytest.raises(FeatureError, match="format"):
        FeaturePipeline.from_state(state)


# ----------------------------------------------------------------------------- rows vs batch


def test_rows_one_at_a_time_equal_the_batch(pipeline):
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    whole = pipeline.transform(table)
    for i in range(len(table)):
        assert pipeline.transform(table.slice(i, 1))[0] == approx(whole[i].tolist())


def test_json_rows_one_at_a_time_equal_the_batch(pipeline):
    rows = pa.Table.from_pandas(FRAME, preserve_index=False).to_pylist()  # what a request holds
    whole = pipeline.transform(rows)
    assert whole == approx(pipeline.transform(FRAME))
    for i, row in enumerate(rows):
        assert pipeline.transform([row])[0] == approx(whole[i].tolist())


def test_timestamp_strings_in_a_batch_equal_one_at_a_time():
    spec = FeatureSpec(transform=T.date_parts, input="ts", parts=[DatePart.hour])
    fitted = fit(spec, CLEAN)
    rows = [{"ts": "2024-01-02"}, {"ts": "2024-01-02T10:00:00"}]
    one_by_one = [fitted.transform([r])[0].tolist() for r in rows]
    assert one_by_one == [[0], [10]]
    assert fitted.transform(rows).tolist() == one_by_one


# ----------------------------------------------------------------------------- real configs


def expected_width(spec: FeatureSpec, columns: dict) -> int:
    """Output columns a declared feature should produce on clean data."""
    if spec.transform == T.one_hot:
        vocabulary = spec.categories or columns[spec.input].allowed
        return min(spec.max_categories, len(vocabulary)) + 1
    if spec.transform == T.bucketize:
        return len(spec.boundaries) + 1 if spec.boundaries is not None else spec.bins
    if spec.transform == T.hashed:
        return spec.buckets
    if spec.transform == T.date_parts:
        return len(part_names([p.value for p in spec.parts], spec.cyclic))
    return 1


@pytest.fixture(scope="module")
def generate():
    return pytest.importorskip("keel.data.synthetic").generate


@pytest.mark.parametrize("experiment", ["churn", "listings"])
def test_real_feature_configs_fit_generated_data(generate, experiment):
    cfg = load(
        [
            f"experiment={experiment}",
            "dataset.source.rows=2000",
            "dataset.source.invalid_fraction=0",
        ]
    )
    table = generate(cfg.dataset)
    fitted = FeaturePipeline.from_config(cfg.features).fit(
        table, batch_size=cfg.features.batch_size
    )
    got = fitted.transform(table)
    width = sum(expected_width(s, cfg.dataset.columns) for s in cfg.features.columns.values())
    assert got.shape == (table.num_rows, width) == (2000, len(fitted.output_columns))
    assert np.isfinite(got).all()
    assert cfg.dataset.target not in fitted.input_columns
    # the same state whether the data arrives in one batch or several
    batched = FeaturePipeline.from_config(cfg.features).fit(table, batch_size=700)
    assert_same_state(fitted.to_state(), batched.to_state())
    # and it survives the JSON round trip
    back = FeaturePipeline.from_state(json.loads(json.dumps(fitted.to_state())))
    assert np.array_equal(back.transform(table.slice(0, 50)), got[:50])


@pytest.mark.parametrize("experiment", ["churn", "listings"])
def test_real_feature_configs_survive_invalid_rows(generate, experiment):
    cfg = load([f"experiment={experiment}", "dataset.source.rows=1000"])
    table = generate(cfg.dataset)  # includes planted invalid values and nulls
    fitted = FeaturePipeline.from_config(cfg.features).fit(table)
    assert np.isfinite(fitted.transform(table)).all()


@pytest.mark.parametrize("impute", ["mean", "most_frequent"])
def test_a_config_that_loads_can_be_fitted(impute):
    """Imputing a timestamp feature: either the config is rejected or the pipeline fits."""
    try:
        cfg = load([f"features.columns.signup.impute={impute}"])
    except ConfigError as e:
        assert "features.columns.signup" in str(e)
        return
    table = pa.table({"signup_ts": [datetime(2024, 1, 1), None, datetime(2024, 3, 1)]})
    fitted = FeaturePipeline({"signup": cfg.features.columns["signup"]}).fit(table)
    assert np.isfinite(fitted.transform(table)).all()

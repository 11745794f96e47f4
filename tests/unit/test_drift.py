"""keel.data.drift: the drift knobs on real rows, with the generators' meaning."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from keel.config.schema import ColumnSpec, ColumnType, DatasetConfig, DriftConfig, Task
from keel.data import drift
from keel.errors import ConfigError

T = ColumnType
C = ColumnSpec
N = 2000
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def dataset(task=Task.multiclass_classification, target="species", **specs) -> DatasetConfig:
    columns = {
        "species": C(type=T.category),
        "mass": C(type=T.float, nullable=True),
        "flipper": C(type=T.int, min=170, max=235),
        "island": C(type=T.category, allowed=["Biscoe", "Dream", "Torgersen"]),
        "sex": C(type=T.category, nullable=True),
        "tagged": C(type=T.bool),
        "name": C(type=T.string),
        "rentals": C(type=T.int, min=0),
        **specs,
    }
    return DatasetConfig(name="penguins", task=task, target=target, columns=columns)


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    rng = np.random.default_rng(0)
    mass = rng.normal(4200, 800, N)
    return pa.table(
        {
            "species": rng.choice(SPECIES, N, p=[0.45, 0.2, 0.35]),
            "mass": pa.array(mass, mask=rng.random(N) < 0.05),
            "flipper": np.clip(rng.normal(200, 14, N).round(), 170, 235).astype(np.int64),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], N, p=[0.5, 0.35, 0.15]),
            "sex": pa.array(rng.choice(["female", "male"], N), mask=rng.random(N) < 0.03),
            "tagged": rng.random(N) < 0.8,
            "name": [f"p{i}" for i in range(N)],
            "rentals": rng.poisson(150, N).astype(np.int64),
        }
    )


def shifted(rows, column, shift, **specs) -> tuple[np.ndarray, np.ndarray]:
    out = drift.covariate(rows, dataset(**specs), {column: shift}, seed=1)
    return rows.column(column).to_numpy(zero_copy_only=False), out.column(column).to_numpy(
        zero_copy_only=False
    )


# ----------------------------------------------------------------------------- covariate


@pytest.mark.parametrize("k", [-1.0, 0.5, 2.0])
def test_a_numeric_column_moves_by_k_standard_deviations(rows, k):
    before, after = shifted(rows, "mass", k)
    assert np.nanmean(after) - np.nanmean(before) == pytest.approx(k * np.nanstd(before))
    assert np.nanstd(after) == pytest.approx(np.nanstd(before))


def test_nulls_stay_null(rows):
    before, after = shifted(rows, "mass", 1.0)
    assert (np.isnan(before) == np.isnan(after)).all()


def test_shifted_values_are_clipped_into_the_declared_range_and_ints_stay_ints(rows):
    out = drift.covariate(rows, dataset(), {"flipper": 2.0}, seed=1)
    col = out.column("flipper")
    assert col.type == pa.int64()
    values = col.to_numpy()
    assert values.max() == 235 and values.min() >= 170
    before = rows.column("flipper").to_numpy()
    assert values.mean() - before.mean() > 14  # moved, less than 2 std where clipped


def rare_share(values: np.ndarray, value) -> float:
    return float(np.mean(values == value))


@pytest.mark.parametrize("share", [0.2, 0.6])
def test_a_category_moves_a_share_of_rows_to_its_least_common_value(rows, share):
    before, after = shifted(rows, "island", share)
    was = rare_share(before, "Torgersen")
    expected = was + share * (1 - was)  # chosen rows already Torgersen stay so
    assert rare_share(after, "Torgersen") == pytest.approx(expected, abs=0.03)
    changed = before != after
    assert set(after[changed]) == {"Torgersen"}


def test_a_category_without_allowed_uses_the_values_present_and_keeps_nulls(rows):
    before, after = shifted(rows, "sex", 0.5)
    rare = min(["female", "male"], key=lambda v: rare_share(before, v))
    assert set(after[before != after]) == {rare}
    assert (np.equal(before, None) == np.equal(after, None)).all()


def test_a_bool_column_moves_to_its_rare_value(rows):
    _, after = shifted(rows, "tagged", 1.0)
    assert after.dtype == bool and not after.any()


@pytest.mark.parametrize(
    ("column", "shift", "message"),
    [
        ("species", 1.0, "'species' is not a feature column"),  # the target
        ("name", 1.0, "'name' is not a feature column"),  # free text
        ("nope", 1.0, "'nope' is not a feature column"),
        ("island", 1.5, r"share for 'island' must be in \[0, 1\]"),
    ],
)
def test_knobs_that_cannot_apply_are_config_errors(rows, column, shift, message):
    with pytest.raises(ConfigError, match=rf"dataset\.source\.drift\.covariate: {message}"):
        drift.covariate(rows, dataset(), {column: shift}, seed=1)


# ----------------------------------------------------------------------------- concept


def relabelled(rows, ds, share, seed=3) -> tuple[np.ndarray, np.ndarray]:
    out = drift.concept(rows, ds, share, seed)
    target = ds.target
    return (
        rows.column(target).to_numpy(zero_copy_only=False),
        out.column(target).to_numpy(zero_copy_only=False),
    )


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_concept_relabels_exactly_the_share_to_the_next_class(rows, share):
    before, after = relabelled(rows, dataset(), share)
    changed = before != after
    assert changed.sum() == round(share * N)
    following = {"Adelie": "Chinstrap", "Chinstrap": "Gentoo", "Gentoo": "Adelie"}
    assert all(following[b] == a for b, a in zip(before[changed], after[changed], strict=True))


def test_binary_labels_flip():
    ds = dataset(task=Task.binary_classification, target="y", y=C(type=T.int, min=0, max=1))
    table = pa.table({"y": pa.array([0, 1, 1, 0, None, 1, 0, 1], pa.int64())})
    out = drift.concept(table, ds, 1.0, seed=0).column("y")
    assert out.type == pa.int64()
    assert out.to_pylist() == [1, 0, 0, 1, None, 0, 1, 0]  # a missing label stays missing


def test_declared_classes_set_the_cycle():
    ds = dataset(species=C(type=T.category, allowed=["Gentoo", "Adelie", "Chinstrap"]))
    table = pa.table({"species": ["Gentoo", "Adelie"]})  # no Chinstrap in these rows
    out = drift.concept(table, ds, 1.0, seed=0).column("species").to_pylist()
    assert out == ["Adelie", "Chinstrap"]


def test_regression_targets_are_mirrored_around_their_mean():
    ds = dataset(task=Task.regression, target="y", y=C(type=T.float))
    y = np.random.default_rng(0).normal(10, 3, 500)
    before, after = relabelled(pa.table({"y": y}), ds, 0.4)
    changed = before != after
    assert changed.sum() == 200
    np.testing.assert_allclose(after[changed], 2 * before.mean() - before[changed])


def test_a_mirrored_count_stays_an_int_inside_its_range(rows):
    ds = dataset(task=Task.regression, target="rentals")
    before, after = relabelled(rows, ds, 1.0)
    assert after.dtype == np.int64 and after.min() >= 0
    np.testing.assert_allclose(after, np.clip(np.round(2 * before.mean() - before), 0, None))


# ----------------------------------------------------------------------------- together


def test_apply_runs_both_knobs_and_is_deterministic_by_seed(rows):
    ds = dataset()
    ds.source.drift = DriftConfig(covariate={"island": 0.5, "mass": 1.0}, concept=0.5)
    once, again = drift.apply(rows, ds, seed=5), drift.apply(rows, ds, seed=5)
    assert once.equals(again)
    assert not once.equals(drift.apply(rows, ds, seed=6))
    for name in ("island", "mass", "species"):
        assert not once.column(name).equals(rows.column(name))
    assert once.column("flipper").equals(rows.column("flipper"))  # not named: untouched


def test_no_knobs_change_nothing(rows):
    assert drift.apply(rows, dataset(), seed=5).equals(rows)

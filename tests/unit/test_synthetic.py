"""Behaviour of the synthetic generators: determinism, schema, validity, planting, truth, drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from omegaconf import OmegaConf
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel.config.schema import DatasetConfig
from keel.data import synthetic
from keel.data.synthetic import chunk_count, generate, generate_chunk, planted

CONF = Path(__file__).parents[2] / "conf"
ARROW = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "category": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}


def load_dataset(name: str, **source_overrides) -> DatasetConfig:
    node = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig), OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
    )
    for key, value in source_overrides.items():
        OmegaConf.update(node, f"source.{key}", value)
    return OmegaConf.to_object(node)


def violations(df: pd.DataFrame, ds: DatasetConfig) -> pd.DataFrame:
    """One boolean column per 'column:rule', computed from the specs independently of keel."""
    out = {}
    for name, spec in ds.columns.items():
        s, null = df[name], df[name].isna()
        if not spec.nullable:
            out[f"{name}:nullable"] = null
        if spec.min is not None:
            out[f"{name}:min"] = ~null & (s.astype(float) < spec.min)
        if spec.max is not None:
            out[f"{name}:max"] = ~null & (s.astype(float) > spec.max)
        if spec.allowed:
            out[f"{name}:allowed"] = ~null & ~s.isin(spec.allowed)
        if spec.regex:
            out[f"{name}:regex"] = ~null & ~s.str.fullmatch(spec.regex, na=True).astype(bool)
        if spec.unique:
            out[f"{name}:unique"] = ~null & s.duplicated(keep=False)
    return pd.DataFrame(out)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def counts(flags: pd.DataFrame) -> dict[str, int]:
    return {k: int(v) for k, v in flags.sum().items() if v}


def inputs(ds: DatasetConfig) -> list[str]:
    return [c for c in ds.columns if c != ds.target]


@pytest.fixture(scope="module")
def churn_clean() -> pd.DataFrame:
    return generate(load_dataset("churn", invalid_fraction=0.0)).to_pandas()


@pytest.fixture(scope="module")
def listings_clean() -> pd.DataFrame:
    return generate(load_dataset("listings", invalid_fraction=0.0)).to_pandas()


# ----------------------------------------------------------------------------- determinism, shape


@pytest.mark.parametrize("name", ["churn", "listings"])
def test_same_seed_same_table_different_seed_different(name):
    ds = load_dataset(name, rows=3000, chunk_rows=1000)
    again = generate(load_dataset(name, rows=3000, chunk_rows=1000))
    assert ipc_bytes(generate(ds)) == ipc_bytes(again)
    other = generate(load_dataset(name, rows=3000, chunk_rows=1000, seed=123))
    assert not generate(ds).equals(other)


def test_chunks_are_pure_and_tile_the_rows():
    small = load_dataset("churn", rows=1000, chunk_rows=300)
    whole = load_dataset("churn", rows=1000, chunk_rows=1000)
    assert (chunk_count(small), chunk_count(whole)) == (4, 1)
    table = generate(small)
    assert table.num_rows == generate(whole).num_rows == 1000
    # any chunk, in any order, equals its slice of the whole; the last chunk is short
    assert generate_chunk(small, 3).equals(table.slice(900, 100))
    assert generate_chunk(small, 1).equals(table.slice(300, 300))
    # ids come from the global row index, whatever the chunking
    clean = [
        load_dataset("churn", rows=1000, chunk_rows=n, invalid_fraction=0) for n in (300, 1000)
    ]
    ids = [generate(ds).column("customer_id").to_pylist() for ds in clean]
    assert ids[0] == ids[1] == [f"C{i:08d}" for i in range(1000)]
    with pytest.raises(ValueError, match="chunk 4"):
        generate_chunk(small, 4)


@pytest.mark.parametrize("name", ["churn", "listings"])
def test_schema_follows_the_column_specs(name):
    ds = load_dataset(name, rows=500)
    table = generate(ds)
    assert table.column_names == list(ds.columns)
    assert [table.schema.field(c).type for c in ds.columns] == [
        ARROW[spec.type.value] for spec in ds.columns.values()
    ]


def test_unknown_generator_is_rejected():
    ds = load_dataset("churn", generator="nope")
    message = "unknown synthetic generator 'nope'; known: churn, listings"
    with pytest.raises(ValueError, match=message):
        generate_chunk(ds, 0)
    with pytest.raises(ValueError, match=message):
        planted(ds)


# ----------------------------------------------------------------------------- clean data


@pytest.mark.parametrize("name", ["churn", "listings"])
def test_clean_data_breaks_no_rule(name, churn_clean, listings_clean):
    ds = load_dataset(name, invalid_fraction=0.0)
    df = churn_clean if name == "churn" else listings_clean
    assert counts(violations(df, ds)) == {}
    assert planted(ds) == {}
    # missing values only where declared, and there are some
    nulls = df.isna().mean()
    assert set(nulls[nulls > 0].index) == {c for c, s in ds.columns.items() if s.nullable}
    start = pd.Timestamp(ds.source.start)
    ts = df[ds.timestamp_column]
    assert ts.min() >= start and ts.max() < start + pd.Timedelta(days=ds.source.days)


def test_churn_is_realistic(churn_clean):
    df = churn_clean
    assert 0.15 <= df.churned.mean() <= 0.25
    assert 0.03 < df.total_charges.isna().mean() < 0.08
    billed = df.dropna(subset=["total_charges"])
    expected = billed.monthly_charges * billed.tenure_months
    assert np.corrcoef(expected, billed.total_charges)[0, 1] > 0.95
    assert df.groupby("contract").tenure_months.mean().is_monotonic_increasing


def test_listings_are_realistic(listings_clean):
    df = listings_clean
    assert np.corrcoef(np.log(df.sqft), np.log(df.price))[0, 1] > 0.6
    assert df.groupby("bedrooms").sqft.median().loc[0:4].is_monotonic_increasing
    assert df.price.between(100, 50_000).all() and df.price.skew() > 0.5


# ----------------------------------------------------------------------------- ground truth


def churn_design(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["age", "tenure_months", "monthly_charges", "support_calls"]
    cats = ["contract", "internet_service", "region"]
    return pd.get_dummies(df[cols + cats], columns=cats, dtype=float)


def listings_design(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["bedrooms", "bathrooms", "amenities", "has_parking"]
    x = pd.get_dummies(df[[*cols, "neighborhood", "property_type"]], dtype=float)
    return x.assign(log_sqft=np.log(df.sqft), has_parking=df.has_parking.astype(float))


@pytest.fixture(scope="module")
def churn_model(churn_clean):
    """A logistic regression fit on the first 70% of the clean churn data."""
    cut = len(churn_clean) * 7 // 10
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(churn_design(churn_clean)[:cut], churn_clean.churned[:cut]), cut


def test_churn_truth_is_learnable(churn_clean, churn_model):
    (model, cut), y = churn_model, churn_clean.churned
    proba = model.predict_proba(churn_design(churn_clean)[cut:])[:, 1]
    assert roc_auc_score(y[cut:], proba) > 0.75


def test_listings_truth_is_learnable(listings_clean):
    df, cut = listings_clean, len(listings_clean) * 7 // 10
    x, y = listings_design(df), np.log(df.price)
    model = LinearRegression().fit(x[:cut], y[:cut])
    assert r2_score(y[cut:], model.predict(x[cut:])) > 0.7


# ----------------------------------------------------------------------------- planting


@pytest.mark.parametrize("name", ["churn", "listings"])
def test_planted_counts_match_an_independent_validator(name):
    ds = load_dataset(name, rows=6000, chunk_rows=1500, invalid_fraction=0.05)
    flags = violations(generate(ds).to_pandas(), ds)
    expected = planted(ds)
    assert counts(flags) == expected
    assert {k.split(":")[1] for k in expected} <= set(synthetic.RULES)
    # each planted row breaks one rule; a planted duplicate also flags its clean donor
    per_row = flags.sum(axis=1)
    assert per_row.max() == 1
    dups = sum(v for k, v in expected.items() if k.endswith(":unique")) // 2
    assert (per_row == 1).sum() - dups == 4 * round(0.05 * 1500)
    assert len(expected) > 15  # many different (column, rule) pairs get planted


def test_planted_needs_no_data(monkeypatch):
    ds = load_dataset("churn", rows=10_000_000)

    def boom(*args):
        raise AssertionError("planted() must not generate data")

    monkeypatch.setitem(synthetic.GENERATORS, "churn", boom)
    found = planted(ds)
    assert sum(found.values()) >= 0.02 * 10_000_000


def test_planting_is_generic_for_any_generator(monkeypatch):
    spec = {
        "name": "toy",
        "task": "regression",
        "target": "y",
        "id_column": "key",
        "columns": {
            "key": {"type": "string", "regex": r"^K\d+$", "unique": True},
            "when": {"type": "timestamp"},
            "flag": {"type": "bool"},
            "score": {"type": "float", "nullable": True, "min": 0, "max": 1},
            "level": {"type": "category", "allowed": ["a", "b", "c"]},
            "count": {"type": "int", "min": 0},
            "y": {"type": "float"},
        },
        "source": {"rows": 2000, "chunk_rows": 700, "invalid_fraction": 0.1, "seed": 3},
    }
    ds = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DatasetConfig), spec))

    def toy(rng, rows, ds, shift):
        n = len(rows)
        cols = shift(
            {
                "key": np.array([f"K{r}" for r in rows], dtype=object),
                "when": np.datetime64("2024-01-01", "us") + np.arange(n).astype("m8[s]"),
                "flag": rng.random(n) < 0.5,
                "score": rng.random(n),
                "level": rng.choice(np.array(["a", "b", "c"], dtype=object), n),
                "count": rng.poisson(3.0, n),
            }
        )
        cols["y"] = cols["score"] + cols["count"]
        return cols

    monkeypatch.setitem(synthetic.GENERATORS, "toy", toy)
    flags = violations(generate(ds).to_pandas(), ds)
    assert counts(flags) == planted(ds)
    assert {"flag:nullable", "when:nullable", "count:min", "key:unique"} <= set(planted(ds))


# ----------------------------------------------------------------------------- drift


def test_numeric_covariate_shift_moves_only_that_column(churn_clean):
    ds = load_dataset("churn", invalid_fraction=0.0)
    ds.source.drift.covariate = {"age": 1.0}
    shifted = generate(ds).to_pandas()
    moved = shifted.age.mean() - churn_clean.age.mean()
    assert moved == pytest.approx(churn_clean.age.std(), rel=0.1)
    assert shifted.age.between(18, 100).all()
    for col in inputs(ds):
        if col != "age":
            assert shifted[col].equals(churn_clean[col]), col


def test_categorical_covariate_shift_moves_rows_to_the_rarest_category(churn_clean):
    ds = load_dataset("churn", invalid_fraction=0.0)
    ds.source.drift.covariate = {"region": 0.5}
    shifted = generate(ds).to_pandas()
    before = churn_clean.region.value_counts(normalize=True)
    rare = before.idxmin()
    assert shifted.region.eq(rare).mean() == pytest.approx(
        before[rare] + 0.5 * (1 - before[rare]), abs=0.02
    )
    assert shifted.contract.equals(churn_clean.contract)


def test_covariate_shift_keeps_the_relation(churn_clean, churn_model):
    # P(y|x) unchanged: a model fit before the shift still ranks and calibrates after it
    model = churn_model[0]
    ds = load_dataset("churn", invalid_fraction=0.0)
    ds.source.drift.covariate = {"monthly_charges": 1.0, "contract": 0.3}
    shifted = generate(ds).to_pandas()
    assert shifted.churned.mean() != churn_clean.churned.mean()
    proba = model.predict_proba(churn_design(shifted))[:, 1]
    assert roc_auc_score(shifted.churned, proba) > 0.75
    assert proba.mean() == pytest.approx(shifted.churned.mean(), abs=0.03)


def test_churn_concept_shift_changes_only_the_relation(churn_clean):
    ds = load_dataset("churn", invalid_fraction=0.0)
    ds.source.drift.concept = 1.0
    shifted = generate(ds).to_pandas()
    for col in inputs(ds):
        assert shifted[col].equals(churn_clean[col]), col
    before = churn_clean.groupby("contract").churned.mean()
    after = shifted.groupby("contract").churned.mean()
    assert before["month-to-month"] > before["two-year"] + 0.2
    assert after["two-year"] > after["month-to-month"] + 0.1
    tenure_corr = [np.corrcoef(d.tenure_months, d.churned)[0, 1] for d in (churn_clean, shifted)]
    assert tenure_corr[0] < 0 < tenure_corr[1]


def test_listings_concept_shift_changes_premiums_and_elasticity(listings_clean):
    ds = load_dataset("listings", invalid_fraction=0.0)
    ds.source.drift.concept = 1.0
    shifted = generate(ds).to_pandas()
    for col in inputs(ds):
        assert shifted[col].equals(listings_clean[col]), col

    def fit(df):
        x = listings_design(df)
        return pd.Series(LinearRegression().fit(x, np.log(df.price)).coef_, index=x.columns)

    before, after = fit(listings_clean), fit(shifted)
    gap = "neighborhood_downtown", "neighborhood_suburbs"
    assert before[gap[0]] - before[gap[1]] > 0.4 > after[gap[0]] - after[gap[1]]
    assert after["log_sqft"] > before["log_sqft"] + 0.15


@pytest.mark.parametrize("column", ["churned", "customer_id", "signup_ts", "no_such_column"])
def test_covariate_on_a_non_feature_is_rejected(column):
    ds = load_dataset("churn", rows=100)
    ds.source.drift.covariate = {column: 0.5}
    with pytest.raises(ValueError, match=column):
        generate_chunk(ds, 0)


def test_categorical_share_must_be_a_fraction():
    ds = load_dataset("churn", rows=100)
    ds.source.drift.covariate = {"region": 1.5}
    with pytest.raises(ValueError, match="region"):
        generate_chunk(ds, 0)

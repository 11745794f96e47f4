"""Batch inference on Ray Data: the served version's predictions on exactly the valid rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from keel.config import load
from keel.config.schema import PostprocessConfig
from keel.data.validation import validate_source
from keel.models import Head
from keel.registry import ModelVersion, Registry, RegistryError
from keel.serving.batch import predict_dataset, score
from keel.serving.postprocess import Postprocessor
from keel.serving.predictor import Predictor

DATA = ("dataset.source.rows=2000", "dataset.source.seed=99")
IDS = {"churn": "customer_id", "listings": "listing_id"}


def config(root: str, *overrides: str, experiment: str = "churn"):
    common = [f"paths.root={root}", "ray.progress_bars=false", f"experiment={experiment}"]
    return load([*common, *DATA, *overrides])


def valid_rows(root: str, experiment: str, reports: str) -> pa.Table:
    """The rows batch inference should predict, validated here on the driver."""
    valid = validate_source(config(root, experiment=experiment).dataset, reports).valid
    return pa.concat_tables(ray.get(valid.to_arrow_refs()))


@pytest.fixture(scope="module")
def churn_rows(trained_root, tmp_path_factory) -> pa.Table:
    return valid_rows(trained_root, "churn", str(tmp_path_factory.mktemp("reports")))


def expected(root: str, model: str, version: int, rows: pa.Table) -> dict:
    """id -> the raw prediction of the same version computed in this process."""
    raw = Predictor.load(Registry(f"{root}/registry"), model, version).predict(rows)
    return dict(zip(rows.column(IDS[model]).to_pylist(), raw.tolist(), strict=True))


def check_predictions(out: pa.Table, want: dict, model: str) -> None:
    got = dict(zip(out[IDS[model]].to_pylist(), out["prediction"].to_pylist(), strict=True))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[i] for i in want], list(want.values()), rtol=0, atol=1e-6)


def test_churn_predicts_every_valid_row_with_the_production_version(trained_root, churn_rows):
    want = expected(trained_root, "churn", 1, churn_rows)
    # Cut points from this model's own predictions, so both labels and the rule surely occur.
    low, threshold, high = np.quantile(list(want.values()), [0.25, 0.5, 0.75]).round(6)
    post = "serve.models.churn.postprocess"
    cfg = config(
        trained_root, f"{post}.threshold={threshold}", f"{post}.rules.0.between=[{low},{high}]"
    )
    result = predict_dataset(cfg)
    out = pq.read_table(result.path)
    report = result.validation

    assert result.path.startswith(f"{trained_root}/predictions/churn/v1-")
    assert result.version == "churn v1" and result.ref == "production"
    assert out.num_rows == result.rows == report.valid_rows == churn_rows.num_rows
    assert report.invalid_rows == pq.read_table(report.quarantine_path).num_rows > 0
    assert set(out["model"].to_pylist()) == {"churn"} and set(out["version"].to_pylist()) == {1}
    assert out.schema.field("prediction").type == pa.float64()
    assert out.schema.field("rules").type == pa.list_(pa.string())
    check_predictions(out, want, "churn")

    p = out["prediction"].to_numpy()
    labels = out["label"].to_pylist()
    assert labels == np.where(p >= threshold, "churns", "stays").tolist()
    assert {"churns", "stays"} == set(labels)
    review = ["human_review" in r for r in out["rules"].to_pylist()]
    assert review == ((p >= low) & (p <= high)).tolist()
    assert any(review) and not all(review)


def test_a_pinned_version_is_used_by_every_worker(trained_root, churn_rows):
    result = predict_dataset(config(trained_root, "serve.models.churn.version=2"))
    out = pq.read_table(result.path)
    assert result.version == "churn v2" and result.ref == "2"
    assert "/predictions/churn/v2-" in result.path
    assert set(out["version"].to_pylist()) == {2}
    check_predictions(out, expected(trained_root, "churn", 2, churn_rows), "churn")


def test_explained_rows_carry_the_explanation_the_version_gives_online(trained_root, churn_rows):
    """keel predict --explain on churn v2 (XGBoost: exact TreeSHAP): each row's attributions,
    one per input column, add up with the base to the log-odds of its prediction and equal
    what the version explains for the same row in this process (what :explain answers)."""
    cfg = config(trained_root, "serve.models.churn.version=2")
    result = predict_dataset(cfg, explain=True)
    out = pq.read_table(result.path)
    assert result.explained and out.num_rows == churn_rows.num_rows
    check_predictions(out, expected(trained_root, "churn", 2, churn_rows), "churn")
    local = Predictor.load(Registry(cfg.paths.registry), "churn", 2)
    columns = local.features.input_columns
    assert out.schema.field("attributions").type == pa.struct([(c, pa.float64()) for c in columns])
    _, _, online = local.explain_rows(churn_rows, cfg.serve.explain.steps)
    want = dict(zip(churn_rows["customer_id"].to_pylist(), online, strict=True))
    for row in out.select(
        ["customer_id", "prediction", "explained", "base", "attributions"]
    ).to_pylist():
        why = want[row["customer_id"]]
        assert row["explained"] == why["explained"] == "log-odds of churned = 1"
        assert row["base"] == pytest.approx(why["base"], abs=1e-6)
        assert row["attributions"] == pytest.approx(why["attributions"], abs=1e-6)
        margin = row["base"] + sum(row["attributions"].values())
        assert 1 / (1 + np.exp(-margin)) == pytest.approx(row["prediction"], abs=1e-5)


def test_unlabeled_files_are_predicted_without_the_target(trained_root, churn_rows, tmp_path):
    path = tmp_path / "to_score.parquet"
    pq.write_table(churn_rows.drop_columns(["churned"]), path)
    cfg = config(trained_root, "dataset.source.format=parquet", f"dataset.source.path={path}")
    result = predict_dataset(cfg)
    out = pq.read_table(result.path)
    assert result.validation.invalid_rows == 0 and out.num_rows == churn_rows.num_rows
    check_predictions(out, expected(trained_root, "churn", 1, churn_rows), "churn")


def test_listings_values_respect_the_price_floor(trained_root, tmp_path):
    rows = valid_rows(trained_root, "listings", str(tmp_path))
    want = expected(trained_root, "listings", 1, rows)
    # conf/serve/default.yaml's price_floor (below 100 -> 100) never fires on this model's
    # prices; the same rule with the floor at the median does on half the rows.
    floor = float(np.median(list(want.values())).round(2))
    rule = "serve.models.listings.postprocess.rules.0"
    cfg = config(
        trained_root, f"{rule}.below={floor}", f"{rule}.value={floor}", experiment="listings"
    )
    result = predict_dataset(cfg)
    out = pq.read_table(result.path)
    assert out.num_rows == result.validation.valid_rows == rows.num_rows
    assert "label" not in out.column_names
    check_predictions(out, want, "listings")
    raw, value = out["prediction"].to_numpy(), out["value"].to_numpy()
    floored = ["price_floor" in r for r in out["rules"].to_pylist()]
    assert floored == (raw < floor).tolist() and any(floored) and not all(floored)
    assert (value >= floor).all()
    np.testing.assert_allclose(value, np.maximum(raw, floor).round(2), rtol=0, atol=1e-9)


def test_an_unknown_version_fails_before_any_data_is_read(trained_root, tmp_path):
    cfg = config(trained_root, "serve.models.churn.version=9", f"paths.reports={tmp_path}/r")
    with pytest.raises(RegistryError, match=r"churn has no version 9 \(versions: 1, 2\)"):
        predict_dataset(cfg)
    assert not (tmp_path / "r").exists()


def test_multiclass_rows_carry_every_probability_and_the_top_k():
    head = Head("multiclass_classification", labels=["a", "b", "c"])
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    stub = SimpleNamespace(
        predict=lambda rows: probs,
        post=Postprocessor(PostprocessConfig(top_k=2), head),
        version=ModelVersion("kinds", 4, "/nowhere", "", None),
    )
    out = score(stub, pa.table({"id": ["x", "y"]}), "id")
    assert out.schema.field("probabilities").type == pa.list_(pa.float64())
    assert out["probabilities"].to_pylist() == probs.tolist()
    assert out["prediction"].to_pylist() == [0.7, 0.5]
    assert out["label"].to_pylist() == ["b", "a"]
    assert out["top_k"].to_pylist()[1] == [
        {"label": "a", "probability": 0.5},
        {"label": "c", "probability": 0.4},
    ]
    assert out["version"].to_pylist() == [4, 4] and out["id"].to_pylist() == ["x", "y"]

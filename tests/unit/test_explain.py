"""Explanations with known answers (keel.models.explain): a linear network's Integrated
Gradients are weight x (x - baseline) per feature; an MLP's sum to output - base within 1e-3
at 256 steps (completeness); TreeSHAP contributions of both tree libraries sum to the raw
margin for every task; and attributions of encoded features fold back to their input column
(one-hot, hashed, date parts: one number each, the total kept)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tree_families import HEADS, X, _fit

from keel.config import load
from keel.config.schema import Family, Task
from keel.data.synthetic import generate
from keel.features import FeaturePipeline
from keel.models import Head
from keel.models.explain import in_words
from keel.models.family import family

BINARY = Head("binary_classification", labels=["no", "yes"])
TORCH = family(Family.torch)


def network(hidden: list[int], head: Head, width: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    spec = {"name": "mlp" if hidden else "linear", "hidden_sizes": hidden, "dropout": 0.0}
    return TORCH.build({**spec, "params": {}}, width, head).eval()


def test_a_linear_networks_attributions_are_weight_times_distance_from_the_baseline():
    net = network([], BINARY)
    baseline = X.mean(axis=0)
    why = TORCH.explain(net, BINARY, X[:20], baseline, 8, "churned")
    weight = next(p for p in net.parameters() if p.dim() == 2).detach().numpy()[0]
    np.testing.assert_allclose(why.attributions, weight * (X[:20] - baseline), atol=1e-5)
    with torch.no_grad():
        logits = net(torch.from_numpy(X[:20]))[:, 0].numpy()
    np.testing.assert_allclose(why.output, logits, atol=1e-5)  # the log-odds it predicts
    assert why.explained == "log-odds of churned = yes"


@pytest.mark.parametrize("task", list(Task))
def test_integrated_gradients_are_complete_to_1e_3_with_enough_steps(task):
    head = HEADS[task][0]
    net = network([16, 8], head, seed=3)
    why = TORCH.explain(net, head, X[:50], X.mean(axis=0), 256, "y")
    gap = np.abs(why.attributions.sum(axis=1) + why.base - why.output)
    assert gap.max() < 1e-3 * max(1.0, head.scale), gap.max()
    if task is Task.regression:  # in the target's units: the value the network predicts
        np.testing.assert_allclose(why.output, TORCH.predict(net, head, X[:50]), rtol=1e-5)
    if task is Task.multiclass_classification:  # the predicted class's logit
        assert why.explained == "logit of the predicted y"


@pytest.mark.parametrize("task", list(Task))
@pytest.mark.parametrize("name", [Family.xgboost, Family.lightgbm])
def test_tree_contributions_sum_to_the_raw_margin(name, task):
    fam, (head, _) = family(name), HEADS[task]
    booster = fam.load({}, 4, head, fam.save(_fit(name, task)), "v1/model.pt", "cpu")
    why = fam.explain(booster, head, X[:40], None, 0, "y")
    np.testing.assert_allclose(why.attributions.sum(axis=1) + why.base, why.output, atol=1e-5)
    predicted = fam.predict(booster, head, X[:40])
    if task is Task.binary_classification:  # the margin is the log-odds of the prediction
        np.testing.assert_allclose(1 / (1 + np.exp(-why.output)), predicted, atol=1e-5)
    elif task is Task.regression:  # the value, in the target's units
        np.testing.assert_allclose(why.output, predicted, rtol=1e-5)
    else:  # the predicted class's margin: softmax over the margins gives its probability
        margin = _margins(name, booster, X[:40])
        np.testing.assert_allclose(why.output, margin.max(axis=1), atol=1e-4)
    assert np.count_nonzero(why.attributions) > 0


def _margins(name: Family, booster, x: np.ndarray) -> np.ndarray:
    if name == Family.xgboost:
        import xgboost as xgb

        return booster.predict(xgb.DMatrix(x), output_margin=True)
    return booster.predict(x, raw_score=True)


def test_attributions_fold_back_to_their_input_column():
    """Churn's features: age is bucketed beside itself, contract one-hot, payment method
    hashed, signup date split into parts, region_charges a group statistic over two columns."""
    cfg = load(["dataset.source.rows=300"])
    pipeline = FeaturePipeline.from_config(cfg.features).fit(generate(cfg.dataset))
    outputs, inputs = pipeline.output_columns, pipeline.input_columns
    by_output = np.arange(1.0, len(outputs) + 1)[None, :]  # a known value per feature column
    folded = dict(zip(inputs, pipeline.fold(by_output)[0], strict=True))

    def total(prefix: str) -> float:
        return sum(v for c, v in zip(outputs, by_output[0], strict=True) if c.startswith(prefix))

    assert folded["contract"] == total("contract=")  # one-hot: one number
    assert folded["payment_method"] == total("payment_method#")  # hashed
    assert folded["signup_ts"] == total("signup.")  # date parts
    group = by_output[0][outputs.index("region_charges")]  # reads region and monthly charges
    assert folded["region"] == pytest.approx(total("region=") + group / 2)
    assert folded["monthly_charges"] == pytest.approx(total("monthly_charges") + group / 2)
    assert folded["age"] == total("age")  # age and age_band both come from age
    assert sum(folded.values()) == pytest.approx(by_output.sum())


def test_an_explanation_of_a_table_row_uses_the_same_features_as_predict():
    cfg = load(["dataset.source.rows=300"])
    table = generate(cfg.dataset)
    pipeline = FeaturePipeline.from_config(cfg.features).fit(table)
    x = pipeline.transform(table.slice(0, 5))
    width = x.shape[1]
    net = network([8], BINARY, width=width, seed=1)
    why = TORCH.explain(net, BINARY, x, x.mean(axis=0), 128, "churned")
    folded = pipeline.fold(why.attributions)
    assert folded.shape == (5, len(pipeline.input_columns))
    np.testing.assert_allclose(folded.sum(axis=1), why.attributions.sum(axis=1), atol=1e-9)


def test_an_explanation_in_words_leads_with_the_largest_attributions():
    why = {
        "explained": "log-odds of churned = 1",
        "base": -1.2,
        "output": 0.5,
        "attributions": {"age": 0.1, "tenure": 1.3, "contract": -0.4, "region": 0.2},
    }
    assert in_words(why, top=2) == (
        "log-odds of churned = 1: 0.5 = base -1.2 + tenure +1.3, contract -0.4 and 2 more columns"
    )
    assert in_words(why, top=4).endswith("region +0.2, age +0.1")


def test_explanations_run_on_one_thread_at_the_lowest_priority_and_no_other():
    import os
    import threading

    from keel.serving.model_server import explain_thread

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice()
    pool = explain_thread()
    try:
        assert pool.submit(nice).result() == 19  # where explain and predict contend, predict wins
        assert (
            pool.submit(threading.get_native_id).result()
            == pool.submit(threading.get_native_id).result()
        )  # one thread: explanations queue behind each other, not beside predict
    finally:
        pool.shutdown()
    assert nice() == before  # the caller's thread (the replica's event loop) keeps its own

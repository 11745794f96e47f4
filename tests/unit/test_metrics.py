"""keel.training.metrics vs scikit-learn, hand-checked values, baselines, slices, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from keel.config.schema import Task
from keel.quality import HIGHER_IS_BETTER, LOWER_IS_BETTER, PRIMARY, better
from keel.training import metrics as M
from keel.training.metrics import (
    baseline_prediction,
    by_slice,
    classification,
    evaluate,
    regression,
)

TOL = 1e-9
B, MC, R = Task.binary_classification, Task.multiclass_classification, Task.regression


def close(a: float, b: float, tol: float = TOL) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def binary_data(seed: int, n: int = 500):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    proba = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0.0, 1.0)
    return y, proba


def multiclass_data(seed: int, n: int = 600, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def regression_data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    y = rng.normal(5.0, 2.0, n)
    return y, y + rng.normal(0, 1.0, n)


# ----------------------------------------------------------------------------- vs scikit-learn


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_matches_sklearn(seed, threshold):
    y, proba = binary_data(seed)
    got = classification(y, proba, threshold=threshold)
    hard = (proba >= threshold).astype(int)
    want = {
        "accuracy": skm.accuracy_score(y, hard),
        "precision": skm.precision_score(y, hard),
        "recall": skm.recall_score(y, hard),
        "f1": skm.f1_score(y, hard),
        "roc_auc": skm.roc_auc_score(y, proba),
        "log_loss": skm.log_loss(y, proba),
    }
    for name, value in want.items():
        assert close(got[name], value), (name, got[name], value)
    assert set(got) == set(M.CLASSIFICATION_METRICS)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 6])
def test_multiclass_matches_sklearn(seed, k):
    y, proba = multiclass_data(seed, k=k)
    got = classification(y, proba)
    hard = proba.argmax(axis=1)
    want = {
        "accuracy": skm.accuracy_score(y, hard),
        "precision": skm.precision_score(y, hard, average="macro"),
        "recall": skm.recall_score(y, hard, average="macro"),
        "f1": skm.f1_score(y, hard, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
        if k > 2
        else skm.roc_auc_score(y, proba[:, 1]),
        "log_loss": skm.log_loss(y, proba, labels=list(range(k))),
    }
    for name, value in want.items():
        assert close(got[name], value), (name, got[name], value)


def test_multiclass_macro_skips_classes_never_seen_or_predicted():
    # class 3 of 4 occurs neither in y nor in the predictions: scikit-learn's default label set
    y, proba = multiclass_data(7, k=4)
    proba[:, 3] = 0.0
    proba /= proba.sum(axis=1, keepdims=True)
    y = np.where(y == 3, 0, y)
    got = classification(y, proba)
    hard = proba.argmax(axis=1)
    for name, fn in [("precision", skm.precision_score), ("f1", skm.f1_score)]:
        assert close(got[name], fn(y, hard, average="macro"))
    # AUC: macro over classes with positives and negatives (sklearn raises here)
    want_auc = np.mean([skm.roc_auc_score(y == c, proba[:, c]) for c in range(3)])
    assert close(got["roc_auc"], want_auc)


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_sklearn(seed):
    y, pred = regression_data(seed)
    got = regression(y, pred)
    want = {
        "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
        "mape": skm.mean_absolute_percentage_error(y, pred),
    }
    for name, value in want.items():
        assert close(got[name], value), (name, got[name], value)
    assert set(got) == set(M.REGRESSION_METRICS)


@pytest.mark.parametrize("seed", range(5))
def test_auc_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    proba = np.round(np.clip(0.2 * y + rng.uniform(0, 0.8, 2000), 0, 1), 1)  # 11 distinct values
    assert close(classification(y, proba)["roc_auc"], skm.roc_auc_score(y, proba))
    # multiclass with coarse scores too
    y3, p3 = multiclass_data(seed, k=3)
    p3 = np.round(p3, 1)
    p3[:, 2] = 1.0 - p3[:, 0] - p3[:, 1]
    p3 = np.clip(p3, 0.0, 1.0)
    p3 /= p3.sum(axis=1, keepdims=True)
    assert close(
        classification(y3, p3)["roc_auc"],
        skm.roc_auc_score(y3, p3, multi_class="ovr", average="macro"),
    )


def test_auc_hand_checked():
    # pairs (pos, neg): 0.8>0.1 1, 0.8>0.4 1, 0.4=0.4 0.5, 0.4>0.1 1 -> 3.5 / 4
    assert classification([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1])["roc_auc"] == 0.875
    assert classification([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])["roc_auc"] == 0.5
    assert classification([1, 1, 0], [0.1, 0.2, 0.9])["roc_auc"] == 0.0


# ----------------------------------------------------------------------------- calibration


def test_ece_perfectly_calibrated_binary_is_zero():
    # 0.2 with 1 positive in 5, 0.75 with 3 in 4
    y = [1, 0, 0, 0, 0, 1, 1, 1, 0]
    p = [0.2] * 5 + [0.75] * 4
    assert classification(y, p)["calibration_error"] == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident_known_values():
    # binary: P(1) = 0.9 on 10 rows, 6 positives -> |6 - 9| / 10
    y = [1] * 6 + [0] * 4
    assert classification(y, [0.9] * 10)["calibration_error"] == pytest.approx(0.3)
    # two bins: bin 1 holds 0.1, 0.1 with no positives (0.2); bin 9 holds 0.9, 0.9 with one (0.8)
    got = classification([0, 0, 1, 0], [0.1, 0.1, 0.9, 0.9])["calibration_error"]
    assert got == pytest.approx((0.2 + 0.8) / 4)
    # multiclass: confidence 0.9 on every row, right half the time -> 0.4
    proba = np.tile([0.9, 0.05, 0.05], (10, 1))
    y = np.array([0] * 5 + [1] * 5)
    assert classification(y, proba)["calibration_error"] == pytest.approx(0.4)


def test_ece_bins_edges():
    # p = 1.0 falls in the last bin, p = 0.0 in the first; both perfectly calibrated
    assert classification([1, 1, 0, 0], [1.0, 1.0, 0.0, 0.0])["calibration_error"] == 0.0


def test_ece_matches_reference_loop():
    y, proba = multiclass_data(3, k=5)
    conf, hit = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0, 1, 11)
    want = 0.0
    for i in range(10):
        m = (conf >= edges[i]) & ((conf < edges[i + 1]) if i < 9 else (conf <= 1.0))
        if m.any():
            want += m.mean() * abs(hit[m].mean() - conf[m].mean())
    assert close(classification(y, proba)["calibration_error"], want)


# ----------------------------------------------------------------------------- baselines


def test_binary_baseline():
    y_train = np.array([1] * 30 + [0] * 70)
    pred = baseline_prediction(B, y_train, 50)
    assert pred.shape == (50,) and np.all(pred == 0.3)
    y_eval = np.random.default_rng(0).integers(0, 2, 50)
    got = evaluate(B, y_eval, pred)
    assert got["roc_auc"] == 0.5
    assert got["accuracy"] == np.mean(y_eval == 0)  # always predicts the majority class 0
    on_train = evaluate(B, y_train, baseline_prediction(B, y_train, len(y_train)))
    assert on_train["accuracy"] == 0.7 and on_train["roc_auc"] == 0.5
    assert on_train["log_loss"] == pytest.approx(skm.log_loss(y_train, np.full(100, 0.3)))
    assert on_train["calibration_error"] == pytest.approx(0.0, abs=1e-12)


def test_multiclass_baseline():
    y_train = np.array([0] * 20 + [1] * 50 + [2] * 30)
    pred = baseline_prediction(MC, y_train, 10)
    assert pred.shape == (10, 3) and np.allclose(pred, [0.2, 0.5, 0.3])
    got = evaluate(MC, y_train, baseline_prediction(MC, y_train, 100))
    assert got["accuracy"] == 0.5 and got["roc_auc"] == 0.5
    # n_classes widens the prior to classes absent from training
    wide = baseline_prediction(MC, y_train, 4, n_classes=5)
    assert wide.shape == (4, 5) and np.allclose(wide[0], [0.2, 0.5, 0.3, 0, 0])


def test_regression_baseline():
    y_train, _ = regression_data(1)
    pred = baseline_prediction(R, y_train, len(y_train))
    assert np.all(pred == y_train.mean())
    assert evaluate(R, y_train, pred)["r2"] == pytest.approx(0.0, abs=1e-12)


def test_baseline_errors():
    with pytest.raises(ValueError, match="empty"):
        baseline_prediction(R, [], 3)
    with pytest.raises(ValueError, match="empty"):
        baseline_prediction(MC, [], 3)
    with pytest.raises(ValueError, match=r"class labels in 0\.\.2"):
        baseline_prediction(MC, [0, 1, 3], 3, n_classes=3)
    with pytest.raises(ValueError, match="n_classes"):
        baseline_prediction(B, [0, 1], 3, n_classes=3)


# ----------------------------------------------------------------------------- by_slice


def test_by_slice_counts_gaps_and_min_rows():
    rng = np.random.default_rng(0)
    n = 300
    y, proba = binary_data(0, n)
    region = np.array(["eu"] * 200 + ["us"] * 90 + ["apac"] * 10, dtype=object)
    region[[5, 205]] = None
    tier = np.where(np.arange(n) % 2 == 0, 1.0, np.nan)
    rng.shuffle(tier)
    got = by_slice(B, y, proba, {"region": region, "tier": tier}, min_rows=20)

    assert list(got["region"]) == ["eu", "us", "apac", "null"]  # most rows first
    assert {k: v["rows"] for k, v in got["region"].items()} == {
        "eu": 199,
        "us": 89,
        "apac": 10,
        "null": 2,
    }
    assert got["region"]["apac"] == {"rows": 10}
    assert got["region"]["null"] == {"rows": 2}
    overall = classification(y, proba)
    for key in ("eu", "us"):
        mask = region == key
        want = classification(y[mask], proba[mask])
        entry = got["region"][key]
        assert {k: entry[k] for k in want} == want
        assert entry["gap"] == want["roc_auc"] - overall["roc_auc"]
    assert {k: v["rows"] for k, v in got["tier"].items()} == {"1.0": 150, "null": 150}
    json.dumps(got)  # plain Python types throughout


def test_by_slice_gap_sign_for_lower_is_better(monkeypatch):
    y, pred = regression_data(2, 100)
    pred[:50] = y[:50] + 3.0  # group "a" is much worse
    group = np.array(["a"] * 50 + ["b"] * 50)
    got = by_slice(R, y, pred, {"g": group})
    assert got["g"]["a"]["gap"] < 0 < got["g"]["b"]["gap"]
    # a lower-is-better primary flips the sign, so negative still means worse
    monkeypatch.setitem(PRIMARY, R, "rmse")
    flipped = by_slice(R, y, pred, {"g": group})
    overall = regression(y, pred)["rmse"]
    assert flipped["g"]["a"]["gap"] == pytest.approx(
        overall - regression(y[:50], pred[:50])["rmse"]
    )
    assert flipped["g"]["a"]["gap"] < 0 < flipped["g"]["b"]["gap"]


def test_by_slice_multiclass_and_single_class_slice():
    y, proba = multiclass_data(4, n=200, k=3)
    got = by_slice(MC, y, proba, {"label": y}, min_rows=10)
    # each slice holds one class: AUC undefined, the macro F1 gap still computed
    for key, entry in got["label"].items():
        assert entry["rows"] == int(np.sum(y == int(key)))
        assert math.isnan(entry["roc_auc"])
        assert not math.isnan(entry["gap"])
    yb, pb = binary_data(5, 100)
    single = by_slice(B, yb, pb, {"y": yb})
    assert all(math.isnan(e["gap"]) for e in single["y"].values())  # primary AUC is NaN


def test_by_slice_errors_and_empty():
    y, proba = binary_data(0, 50)
    with pytest.raises(ValueError, match="slice 'c' has 3 rows but y has 50"):
        by_slice(B, y, proba, {"c": np.array([1, 2, 3])})
    assert by_slice(B, [], np.array([]), {"c": np.array([])}) == {"c": {}}


# ----------------------------------------------------------------------------- better


def test_better_directions_and_margin():
    assert better("roc_auc", 0.8, 0.7)
    assert not better("roc_auc", 0.7, 0.8)
    assert not better("roc_auc", 0.8, 0.8)  # a tie is not better
    assert better("rmse", 1.0, 2.0)
    assert not better("rmse", 2.0, 1.0)
    assert better("r2", 0.80, 0.70, margin=0.05)
    assert not better("r2", 0.72, 0.70, margin=0.05)
    assert better("log_loss", 0.30, 0.40, margin=0.1 - 1e-12)
    assert not better("log_loss", 0.35, 0.40, margin=0.1)
    assert better("f1", 0.5, float("nan")) and not better("f1", float("nan"), 0.5)
    for m in HIGHER_IS_BETTER | LOWER_IS_BETTER:
        assert better(m, 1.0, 2.0) == (m in LOWER_IS_BETTER)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        better("auc", 1, 0)
    with pytest.raises(ValueError, match="margin"):
        better("f1", 1, 0, margin=-0.1)


def test_metric_sets_cover_every_metric():
    assert HIGHER_IS_BETTER.isdisjoint(LOWER_IS_BETTER)
    assert set(M.CLASSIFICATION_METRICS) | set(M.REGRESSION_METRICS) == (
        HIGHER_IS_BETTER | LOWER_IS_BETTER
    )
    assert all(m in HIGHER_IS_BETTER for m in PRIMARY.values())
    assert set(PRIMARY) == set(Task)


# ----------------------------------------------------------------------------- edge cases


def test_empty_inputs_give_nan():
    for got in (
        classification([], np.array([])),
        classification([], np.empty((0, 3))),
        regression([], []),
        evaluate("regression", [], []),
    ):
        assert got and all(isinstance(v, float) and math.isnan(v) for v in got.values())


def test_single_class_and_constant_predictions():
    got = classification([1, 1, 1], [0.9, 0.2, 0.6])
    assert math.isnan(got["roc_auc"])
    assert got["precision"] == 1.0 and got["recall"] == pytest.approx(2 / 3)
    none_predicted = classification([0, 1, 0], [0.1, 0.1, 0.1])
    assert none_predicted["precision"] == 0.0 and none_predicted["f1"] == 0.0  # sklearn: 0
    assert none_predicted["roc_auc"] == 0.5
    assert math.isnan(classification([2, 2], np.tile([0.2, 0.3, 0.5], (2, 1)))["roc_auc"])
    const = regression([3.0, 3.0, 3.0], [3.0, 2.0, 4.0])
    assert math.isnan(const["r2"]) and const["mae"] == pytest.approx(2 / 3)


def test_log_loss_clips_and_mape_eps():
    got = classification([1, 0], [0.0, 1.0])["log_loss"]
    assert got == pytest.approx(-math.log(1e-15))
    assert regression([0.0, 2.0], [1e-9, 1.0])["mape"] == pytest.approx((0.1 + 0.5) / 2)


def test_results_are_plain_floats():
    y, proba = multiclass_data(0, n=50, k=3)
    for got in (
        classification(y, proba),
        classification(*binary_data(0, 50)),
        regression(*regression_data(0, 50)),
    ):
        assert all(type(v) is float for v in got.values())
        json.dumps(got)


def test_evaluate_dispatch():
    y, proba = binary_data(1, 100)
    assert evaluate(B, y, proba) == classification(y, proba)
    assert evaluate("binary_classification", y, np.c_[1 - proba, proba]) == classification(y, proba)
    ym, pm = multiclass_data(1, k=3)
    assert evaluate(MC, ym, pm) == classification(ym, pm)
    yr, pr = regression_data(1)
    assert evaluate(R, yr, pr.reshape(-1, 1)) == regression(yr, pr)
    with pytest.raises(ValueError, match="shape \\(n, k\\)"):
        evaluate(MC, y, proba)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate("ranking", y, proba)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: classification([0, 1, np.nan], [0.1, 0.2, 0.3]), "y has 1 non-finite"),
        (lambda: classification([0, 1, 1], [0.1, np.nan, 0.3]), "proba has 1 non-finite"),
        (lambda: classification([0, 1, 2], [0.1, 0.2, 0.3]), "class labels in 0..1"),
        (lambda: classification([0, 1, 0.5], [0.1, 0.2, 0.3]), "integer class labels"),
        (lambda: classification(["a", "b"], [0.1, 0.2]), "y must be numeric"),
        (lambda: classification([0, 1], [0.1, 1.2]), r"proba must lie in \[0, 1\]"),
        (lambda: classification([0, 1], [0.1, 0.2, 0.3]), "y has 2 rows but proba has 3"),
        (lambda: classification([0, 1], [0.1, 0.2], threshold=2), "threshold"),
        (lambda: classification([0, 1], [[0.5, 0.6], [0.5, 0.5]]), "sum to 1; 1 row"),
        (lambda: classification([0, 0], [[1.0], [1.0]]), "at least 2 columns"),
        (lambda: classification([0, 3], np.full((2, 3), 1 / 3)), "class labels in 0..2"),
        (lambda: regression([1.0, np.inf], [1.0, 2.0]), "y has 1 non-finite"),
        (lambda: regression([1.0, 2.0], [1.0, np.nan]), "pred has 1 non-finite"),
        (lambda: regression([1.0, 2.0], [1.0]), "y has 2 rows but pred has 1"),
        (lambda: regression(np.ones((2, 2)), np.ones((2, 2))), "1-dimensional"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_float32_softmax_rows_accepted():
    y, proba = multiclass_data(2, k=10)
    p32 = proba.astype(np.float32)
    got = classification(y, p32)
    assert got["accuracy"] == classification(y, proba)["accuracy"]


def test_large_input_is_fast():
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.integers(0, 2, n)
    proba = rng.uniform(size=n)
    group = rng.integers(0, 1000, n)
    start = time.perf_counter()
    classification(y, proba)
    by_slice(B, y, proba, {"g": group})
    assert time.perf_counter() - start < 10.0


# ----------------------------------------------------------------------------- per-class recall


def test_per_class_recall_hand_checked():
    # class 0: 2 of 3 rows right; class 1: 1 of 1; class 2: 0 of 2 (both taken for class 0)
    y = [0, 0, 0, 1, 2, 2]
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.5, 0.2, 0.3],
            [0.4, 0.3, 0.3],
        ]
    )
    assert M.per_class_recall(y, proba) == pytest.approx([2 / 3, 1.0, 0.0])
    # the macro recall evaluate reports is their mean when every class occurs
    assert evaluate(MC, y, proba)["recall"] == pytest.approx(np.mean([2 / 3, 1.0, 0.0]))


def test_per_class_recall_matches_sklearn():
    y, proba = multiclass_data(5, k=4)
    expected = skm.recall_score(y, proba.argmax(1), average=None, labels=range(4))
    np.testing.assert_allclose(M.per_class_recall(y, proba), expected, rtol=TOL)


def test_per_class_recall_is_nan_for_a_class_without_rows():
    recall = M.per_class_recall([0, 0, 1], np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0, 1, 0]]))
    assert recall[:2] == pytest.approx([0.5, 1.0])
    assert math.isnan(recall[2])


def test_per_class_recall_refuses_binary_and_bad_labels():
    with pytest.raises(ValueError, match=r"shape \(n, k\)"):
        M.per_class_recall([0, 1], np.array([0.2, 0.9]))
    with pytest.raises(ValueError, match=r"class labels in 0\.\.1"):
        M.per_class_recall([0, 2], np.array([[0.5, 0.5], [0.5, 0.5]]))

"""Label-free quality estimation (keel.training.estimator) on generated data whose answers are
known: labels drawn from a known P(y | x), a model whose scores are monotone in it but not
calibrated, validation rows from the training distribution and windows from a shifted one.

Under covariate shift (x moves, P(y | x) stays) the estimate must land within 0.03 of the
realized metrics on 5,000 rows; under concept shift (P(y | x) changes, x stays) it cannot see
the change, which the monitor reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keel.config.schema import ESTIMATED, Task
from keel.training import estimator
from keel.training.metrics import evaluate

BINARY, MULTI, REGRESSION = (
    Task.binary_classification,
    Task.multiclass_classification,
    Task.regression,
)
ROWS = 5_000


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def binary(rng, shift: float, flip: bool = False):
    """x ~ N(shift, 1.5); P(y=1 | x) = sigmoid(2x - 0.5) (sigmoid(-2x + 0.5) when flipped: a
    concept shift); the model's score sigmoid(0.8x): monotone, wrongly scaled and centred."""
    x = rng.normal(shift, 1.5, ROWS)
    truth = sigmoid((-1 if flip else 1) * (2 * x - 0.5))
    return (rng.random(ROWS) < truth).astype(np.int64), sigmoid(0.8 * x)


def multiclass(rng, shift: float):
    """Three classes from softmax(x W); the model's probabilities softmax(0.5 x W): under-
    confident. The shift moves x towards class 2."""
    w = np.array([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0]])
    x = rng.normal(0, 1.2, (ROWS, 2)) + np.array([0.0, shift])
    truth = softmax(x @ w)
    y = (rng.random((ROWS, 1)) > truth.cumsum(axis=1)).sum(axis=1)
    return y, softmax(0.5 * x @ w)


@pytest.mark.parametrize("shift", [0.0, 1.0, -1.5])
def test_binary_estimate_is_within_0_03_of_realized_under_covariate_shift(shift):
    rng = np.random.default_rng(7)
    y_val, s_val = binary(rng, 0.0)
    fitted = estimator.fit(BINARY, y_val, s_val, np.zeros((ROWS, 0)))
    y, s = binary(rng, shift)
    estimated = fitted.estimate(s)
    realized = evaluate(BINARY, y, s)
    assert set(estimated.metrics) == set(ESTIMATED[BINARY])
    for name, value in estimated.metrics.items():
        # precision and recall count only the few hundred positives a shifted window may
        # hold: their realized values are noisier (up to 0.045 apart over 12 seeds)
        within = 0.03 if name in ("accuracy", "roc_auc") else 0.05
        assert value == pytest.approx(realized[name], abs=within), name
    confusion = np.array(estimated.confusion)
    assert confusion.sum() == pytest.approx(ROWS) and confusion.shape == (2, 2)


def test_multiclass_estimate_is_within_0_03_of_realized_under_covariate_shift():
    rng = np.random.default_rng(3)
    y_val, p_val = multiclass(rng, 0.0)
    fitted = estimator.fit(MULTI, y_val, p_val, np.zeros((ROWS, 0)))
    y, p = multiclass(rng, 1.0)
    estimated = fitted.estimate(p)
    realized = evaluate(MULTI, y, p)
    assert abs(realized["accuracy"] - evaluate(MULTI, y_val, p_val)["accuracy"]) > 0.03  # moved
    for name, value in estimated.metrics.items():
        assert value == pytest.approx(realized[name], abs=0.03), name
    assert np.array(estimated.confusion).shape == (3, 3)


def test_concept_shift_is_invisible_to_the_estimate():
    rng = np.random.default_rng(11)
    y_val, s_val = binary(rng, 0.0)
    fitted = estimator.fit(BINARY, y_val, s_val, np.zeros((ROWS, 0)))
    y, s = binary(rng, 0.0, flip=True)
    estimated, realized = fitted.estimate(s).metrics, evaluate(BINARY, y, s)
    assert estimated["roc_auc"] > 0.8 and realized["roc_auc"] < 0.2  # it sees nothing wrong
    assert "concept shift" in estimator.BLIND_TO


def test_regression_loss_estimate_follows_a_covariate_shift():
    """y = x0 + noise whose spread grows with |x1|; the model predicts x0 exactly, so its error
    is the noise. Moving x1 outwards raises MAE and RMSE, which the error model must see (within
    the validation split's range: trees do not extrapolate beyond it)."""
    rng = np.random.default_rng(5)

    def draw(spread: float):
        x = np.column_stack([rng.normal(0, 1, ROWS), rng.normal(0, spread, ROWS)])
        y = x[:, 0] + rng.normal(0, 1, ROWS) * (0.2 + np.abs(x[:, 1]))
        return x.astype(np.float32), y, x[:, 0].copy()

    x_val, y_val, p_val = draw(1.0)
    fitted = estimator.fit(REGRESSION, y_val, p_val, x_val)
    x, y, p = draw(1.5)
    estimated = fitted.estimate(x, p).metrics
    realized = evaluate(REGRESSION, y, p)
    assert realized["mae"] > 1.3 * evaluate(REGRESSION, y_val, p_val)["mae"]  # the shift hurt
    assert set(estimated) == set(ESTIMATED[REGRESSION])
    for name in ("mae", "rmse"):
        assert estimated[name] == pytest.approx(realized[name], rel=0.15), name


def test_calibration_matches_scikit_learns_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(2)
    score = np.round(rng.random(2_000), 2)  # ties, as scores often have
    hit = rng.random(2_000) < score**2
    fitted = estimator.Calibration.fit(BINARY, hit.astype(np.int64), score)
    reference = IsotonicRegression(out_of_bounds="clip").fit(score, hit)
    probe = np.linspace(-0.1, 1.1, 301)
    np.testing.assert_allclose(fitted.apply(probe), reference.predict(probe), atol=1e-12)


def test_with_certain_labels_the_expected_auc_is_the_auc():
    rng = np.random.default_rng(4)
    y, score = rng.integers(0, 2, 500), np.round(rng.random(500), 1)
    assert estimator._expected_auc(score, y.astype(np.float64)) == pytest.approx(
        evaluate(BINARY, y, score)["roc_auc"]
    )


@pytest.mark.parametrize("task", [BINARY, MULTI, REGRESSION])
def test_a_stored_estimator_reads_back_and_estimates_the_same(task):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 2)).astype(np.float32)
    if task is REGRESSION:
        y, raw = features[:, 0] + rng.normal(0, 0.3, 200), features[:, 0].astype(np.float64)
    elif task is MULTI:
        y, raw = rng.integers(0, 3, 200), softmax(rng.normal(size=(200, 3)))
    else:
        y, raw = rng.integers(0, 2, 200), rng.random(200)
    fitted = estimator.fit(task, y, raw, features)
    read = estimator.from_json(json.loads(json.dumps(fitted.to_json())), "estimator.json")
    args = (features, raw) if task is REGRESSION else (raw,)
    assert read.estimate(*args) == fitted.estimate(*args)


def test_too_small_a_validation_split_fits_no_estimator():
    few = estimator.MIN_ROWS - 1
    assert (
        estimator.fit(BINARY, np.ones(few, np.int64), np.full(few, 0.5), np.zeros((few, 0))) is None
    )
    # rows of a class the head never saw (-1) do not count
    y = np.array([-1] * 100 + [1] * few)
    assert estimator.fit(BINARY, y, np.full(len(y), 0.5), np.zeros((len(y), 0))) is None


def test_a_broken_estimator_file_is_named():
    with pytest.raises(ValueError, match=r"v3/estimator\.json is not a quality estimator"):
        estimator.from_json({"method": "magic"}, "v3/estimator.json")

"""The tree families' own part, without Ray: a booster saved in its library's format loads
back, predicts what the library predicts through the task head (the regression target scaled
back), refuses bytes that are not a model of its kind, and checks its width."""

from __future__ import annotations

import numpy as np
import pytest

from keel.config.schema import Family, Task
from keel.errors import RegistryError
from keel.models import Head
from keel.models.family import family

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4)).astype(np.float32)
HEADS = {
    Task.binary_classification: (Head("binary_classification", labels=["no", "yes"]), 2),
    Task.multiclass_classification: (Head("multiclass_classification", labels=[0, 1, 2]), 3),
    Task.regression: (Head("regression", mean=100.0, scale=20.0), None),
}


def _targets(task: Task) -> np.ndarray:
    if task == Task.regression:
        return X[:, 0] * 2 + X[:, 1]
    classes = 2 if task == Task.binary_classification else 3
    return np.digitize(X[:, 0], np.quantile(X[:, 0], np.linspace(0, 1, classes + 1)[1:-1]))


def _fit(name: Family, task: Task):
    y = _targets(task).astype(np.float32)
    if name == Family.xgboost:
        import xgboost as xgb

        objective = {
            Task.binary_classification: {"objective": "binary:logistic"},
            Task.multiclass_classification: {"objective": "multi:softprob", "num_class": 3},
            Task.regression: {"objective": "reg:squarederror"},
        }[task]
        return xgb.train({**objective, "nthread": 1}, xgb.DMatrix(X, label=y), 5)
    import lightgbm as lgb

    objective = {
        Task.binary_classification: {"objective": "binary"},
        Task.multiclass_classification: {"objective": "multiclass", "num_class": 3},
        Task.regression: {"objective": "regression"},
    }[task]
    params = {**objective, "num_threads": 1, "verbosity": -1, "min_data_in_leaf": 5}
    return lgb.train(params, lgb.Dataset(X, label=y), 5)


@pytest.mark.parametrize("task", list(Task))
@pytest.mark.parametrize("name", [Family.xgboost, Family.lightgbm])
def test_a_saved_booster_loads_and_predicts_through_the_head(name, task):
    fam, (head, _) = family(name), HEADS[task]
    booster = _fit(name, task)
    loaded = fam.load({}, 4, head, fam.save(booster), "v1/model.pt", "cpu")
    got = fam.predict(loaded, head, X[:50])
    if name == Family.xgboost:
        import xgboost as xgb

        raw = booster.predict(xgb.DMatrix(X[:50]))
    else:
        raw = booster.predict(X[:50])
    want = raw * 20.0 + 100.0 if task == Task.regression else raw
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == np.float32
    assert got.shape == ((50, 3) if task == Task.multiclass_classification else (50,))
    assert fam.predict(loaded, head, X[:0]).shape == ((0, 3) if head.outputs > 1 else (0,))
    assert fam.save(loaded) == fam.save(booster) or name == Family.xgboost  # params set on load


@pytest.mark.parametrize("name", [Family.xgboost, Family.lightgbm])
def test_bytes_that_are_not_a_model_of_the_family_are_refused_naming_the_file(name):
    fam, (head, _) = family(name), HEADS[Task.regression]
    for junk in (b"not a model", b"\xff\xfe\x00garbage", b"", b"{}", b"{L"):  # "": an abort
        with pytest.raises(RegistryError, match=r"churn/0003/model.pt is not an? \w+ model"):
            fam.load({}, 4, head, junk, "churn/0003/model.pt", "cpu")
    saved = fam.save(_fit(name, Task.regression))
    with pytest.raises(RegistryError, match="takes 4 features but the version's spec says 7"):
        fam.load({}, 7, head, saved, "churn/0003/model.pt", "cpu")


@pytest.mark.parametrize("name", list(Family))
def test_one_worker_runs_the_familys_loop_on_the_base_trainer(name):
    from keel.training.trainer import resolve, trainer_class

    fam = family(name)
    several, one = (resolve(trainer_class(fam.trainer, n)) for n in (2, 1))
    assert several is resolve(fam.trainer)
    # the family's trainer is the base one plus its backend: the same arguments run the loop
    assert issubclass(several, one) and several is not one

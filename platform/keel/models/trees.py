"""Gradient-boosted trees as model families: XGBoost and LightGBM boosters, fitted by the
loops in keel.training.boost on Ray Train's trainers for each library, saved in each library's
own model format (never a pickle), and applied to a feature matrix in evaluation and serving.

A booster's raw prediction is already what the head predicts for classification (P(positive),
class probabilities); for regression it is the scaled target, which the head's mean and scale
turn back into the value, as for the torch networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.config.schema import Family, Task
from keel.errors import RegistryError

from .explain import Explanation, tree_contributions
from .head import Head

# a replica or an evaluation predicts with one thread: replicas hold a fraction of a CPU, and
# the batches they see are small
PREDICT_THREADS = 1


def finish(head: Head, raw: np.ndarray) -> np.ndarray:
    """A booster's raw output as the head's prediction (float32, as the torch family's)."""
    out = np.asarray(raw, np.float32)
    if head.task == Task.regression:
        return out * np.float32(head.scale) + np.float32(head.mean)
    return out


def _empty(head: Head) -> np.ndarray:
    return np.zeros((0, head.outputs) if head.outputs > 1 else 0, np.float32)


def _refuse(where: str, kind: str, error: Exception) -> RegistryError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return RegistryError(f"{where} is not {kind} model ({first[:200]})")


def _check_width(where: str, found: int, in_features: int) -> None:
    if found != in_features:
        raise RegistryError(
            f"{where} takes {found} features but the version's spec says {in_features}"
        )


class XGBoost:
    name = Family.xgboost
    trainer = "ray.train.xgboost.XGBoostTrainer"
    worker_loop = "keel.training.boost.xgboost_loop"

    def save(self, fitted: Any) -> bytes:
        return bytes(fitted.save_raw("ubj"))

    def load(
        self, model: dict, in_features: int, head: Head, data: bytes, where: str, device: str
    ) -> Any:
        import xgboost as xgb

        # XGBoost aborts the whole process (a replica, a job) on empty input: refuse what is
        # not a UBJSON or JSON object before it is parsed
        if not data.startswith(b"{"):
            raise RegistryError(f"{where} is not an XGBoost model (no UBJSON or JSON object)")
        try:
            booster = xgb.Booster(model_file=bytearray(data))
        except xgb.core.XGBoostError as e:
            raise _refuse(where, "an XGBoost", e) from None
        _check_width(where, booster.num_features(), in_features)
        booster.set_param({"device": device, "nthread": PREDICT_THREADS})
        return booster

    def predict(self, fitted: Any, head: Head, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return _empty(head)
        return finish(head, fitted.inplace_predict(np.ascontiguousarray(x, np.float32)))

    def explain(self, fitted, head, x, baseline, steps, target) -> Explanation:
        import xgboost as xgb

        rows = xgb.DMatrix(np.ascontiguousarray(x, np.float32))
        return tree_contributions(fitted.predict(rows, pred_contribs=True), head, target)


class LightGBM:
    name = Family.lightgbm
    trainer = "ray.train.lightgbm.LightGBMTrainer"
    worker_loop = "keel.training.boost.lightgbm_loop"

    def save(self, fitted: Any) -> bytes:
        return fitted.model_to_string().encode()

    def load(
        self, model: dict, in_features: int, head: Head, data: bytes, where: str, device: str
    ) -> Any:
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=data.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as e:
            raise _refuse(where, "a LightGBM", e) from None
        _check_width(where, booster.num_feature(), in_features)
        return booster  # the pip wheel predicts on the CPU whatever the device

    def predict(self, fitted: Any, head: Head, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return _empty(head)
        return finish(head, fitted.predict(x, num_threads=PREDICT_THREADS))

    def explain(self, fitted, head, x, baseline, steps, target) -> Explanation:
        found = fitted.predict(x, pred_contrib=True, num_threads=PREDICT_THREADS)
        if head.outputs > 1:  # one block of f + 1 per class, side by side
            found = np.asarray(found).reshape(len(x), head.outputs, -1)
        return tree_contributions(found, head, target)

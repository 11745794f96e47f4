"""Evaluation of a trained model on the test split: metrics overall and per slice beside a
trivial baseline, and the in-process latency profile that serving sizes autoscaling from."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from keel.config.schema import DatasetConfig, Task
from keel.features import FeaturePipeline
from keel.models import Head
from keel.quality import PRIMARY
from keel.targets import Unknown, encode

from . import estimator, metrics

LATENCY_BATCHES = (1, 32, 256)


Predict = Callable[[np.ndarray], np.ndarray]  # a fitted model: feature matrix -> raw predictions


def evaluate(
    predict: Predict, head: Head, test, dataset: DatasetConfig, y_train: np.ndarray
) -> dict[str, Any]:
    """Metrics of a fitted model on the encoded test dataset (columns: features, y, slices)."""
    out = outputs(predict, test, ("y", *dataset.slices))
    y_all, pred_all = _targets(head, out["y"]), out["prediction"]
    task = Task(dataset.task)
    base = metrics.baseline_prediction(
        task, _targets(head, y_train), len(y_all), n_classes=len(head.labels) or None
    )
    return {
        "rows": len(y_all),
        "test": metrics.evaluate(task, y_all, pred_all),
        "baseline": metrics.evaluate(task, y_all, base),
        "slices": metrics.by_slice(task, y_all, pred_all, {c: out[c] for c in dataset.slices}),
        "primary_metric": PRIMARY[task],
    }


def quality_estimator(predict: Predict, head: Head, *held_out) -> dict | None:
    """The version's label-free quality estimator fitted on encoded splits the model did not
    train on (validation and test: the more rows, the finer the calibration), as its JSON
    (None when they are too small to fit one on)."""
    parts = [outputs(predict, split, ("target", "features")) for split in held_out]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    y = head.decode(out["target"])
    fitted = estimator.fit(head.task, y, out["prediction"], out["features"])
    return fitted.to_json() if fitted else None


def outputs(predict: Predict, encoded, keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The model's raw outputs on an encoded dataset ("prediction") beside the `keep` columns
    of it (the raw target "y", the encoded "target", "features", slices)."""
    parts: dict[str, list] = {name: [] for name in ("prediction", *keep)}
    for batch in encoded.iter_batches(batch_format="numpy", batch_size=65_536):
        parts["prediction"].append(predict(batch["features"].astype(np.float32)))
        for name in keep:
            parts[name].append(batch[name])
    return {name: np.concatenate(values) for name, values in parts.items()}


def _targets(head: Head, y: np.ndarray) -> np.ndarray:
    """Targets in the form the metrics take: class index (-1, which they refuse, for a class
    the head never saw), or the raw regression value."""
    encoded = encode(np.asarray(y).tolist(), head.task, head.labels, Unknown.minus_one)
    return encoded if head.task == Task.regression else encoded.astype(np.int64)


def latency_profile(
    predict: Predict,
    features: FeaturePipeline,
    rows: list[dict],
    repeats: int = 20,
) -> dict[str, dict[str, float]]:
    """Median in-process time of features + model on raw JSON-like rows, per batch size:
    {"device", "ms_per_batch": {"1": ..., "32": ..., "256": ...}, "ms_per_row": {...},
    "p99_ms_per_batch": {...}} (the p99 of `repeats` timings: their slowest at 20 or fewer)."""
    profile = {"device": "cpu", "ms_per_batch": {}, "ms_per_row": {}, "p99_ms_per_batch": {}}
    for size in LATENCY_BATCHES:
        batch = (rows * (size // max(len(rows), 1) + 1))[:size]
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            predict(features.transform(batch))
            times.append(time.perf_counter() - started)
        ms = float(np.median(times) * 1000)
        profile["ms_per_batch"][str(size)] = ms
        profile["ms_per_row"][str(size)] = ms / size
        profile["p99_ms_per_batch"][str(size)] = float(np.percentile(times, 99) * 1000)
    return profile

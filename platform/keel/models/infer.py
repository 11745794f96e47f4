"""Inference: the network and its head applied to a feature matrix, in evaluation and serving."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from .head import Head


@torch.no_grad()
def predict(model: torch.nn.Module, head: Head, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Predictions for a feature matrix (probabilities for classification)."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    parts = [
        head.predict(model(torch.from_numpy(x[i : i + batch]).to(device)))
        for i in range(0, len(x), batch)
    ]
    if parts:
        return np.concatenate(parts)
    return np.zeros((0, head.outputs) if head.outputs > 1 else 0)


def score(raw: np.ndarray) -> np.ndarray:
    """The one number logged per prediction: P(positive), the value, or the top class's
    probability. Serving logs it and training stores it with the drift reference."""
    return (raw.max(axis=1) if raw.ndim == 2 else raw).astype(np.float64)


def probabilities(raw: np.ndarray) -> pa.Array:
    """The logged class probabilities (prediction_log.PROBABILITIES): a multiclass prediction's
    row of them, in the head's label order; null for binary and regression, whose score says
    it all. Serving logs them, batch inference writes them, training stores them with the
    reference, so multiclass quality is computed the same way everywhere."""
    kind = pa.list_(pa.float64())
    if raw.ndim != 2:
        return pa.nulls(len(raw), kind)
    offsets = np.arange(0, raw.size + 1, raw.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(offsets, np.asarray(raw, np.float64).ravel(), type=kind)

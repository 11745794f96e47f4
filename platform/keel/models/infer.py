"""Inference: the network and its head applied to a feature matrix, in evaluation and serving."""

from __future__ import annotations

import numpy as np
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

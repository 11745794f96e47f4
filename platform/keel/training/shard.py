"""A Ray Train worker's shard of encoded rows read whole into memory, as every model family's
worker loop reads it (torch keeps it as tensors when it fits; trees always need it whole)."""

from __future__ import annotations

import numpy as np

# the encoded datasets' columns (training/dataset.py writes them, the worker loops read them)
FEATURES, TARGET = "features", "target"


def read_arrays(shard, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The shard's feature matrix and targets as float32 arrays; a worker with no rows gets
    empty ones of the right width."""
    parts = list(shard.iter_batches(batch_format="numpy", batch_size=65_536))
    if not parts:
        return np.zeros((0, in_features), np.float32), np.zeros(0, np.float32)
    return tuple(
        np.concatenate([p[key] for p in parts]).astype(np.float32, copy=False)
        for key in (FEATURES, TARGET)
    )

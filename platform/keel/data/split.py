"""Deterministic train/val/test split by a hash of each row's id.

A row's split depends only on its id and the split seed, never on block layout or worker
count, so the same row lands in the same split in every run and on every cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keel.config.schema import DatasetConfig

SPLITS = ("train", "val", "test")


def position(batch: pa.Table, dataset: DatasetConfig) -> np.ndarray:
    """Each row's place in [0, 1): ids hashed with the split seed (whole rows without an id)."""
    salt = f"{dataset.split.seed}:"
    if dataset.id_column:
        return key_position(batch.column(dataset.id_column).to_pylist(), salt)
    # Each column as text: through pandas an int column with a null somewhere in its batch
    # turns float, so a row's hash (and split) would depend on the rows beside it.
    frame = pd.DataFrame(
        {name: _text(batch.column(name)) for name in dataset.columns}, dtype=object
    )
    return _unit(pd.util.hash_pandas_object(frame, index=False).to_numpy() ^ _hash_salt(salt))


def _text(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)


def key_position(keys: list, salt: str) -> np.ndarray:
    """Each key's place in [0, 1), hashed with a salt: the same key always lands in one place."""
    keys = pd.Series(keys, dtype=object).astype(str)
    return _unit(pd.util.hash_array((salt + keys).to_numpy(dtype=object)))


def _unit(hashed: np.ndarray) -> np.ndarray:
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _hash_salt(salt: str) -> np.uint64:
    return pd.util.hash_array(np.array([salt], dtype=object))[0]


def keep(batch: pa.Table, dataset: DatasetConfig, name: str) -> pa.Table:
    s = dataset.split
    edges = {
        "train": (0.0, s.train),
        "val": (s.train, s.train + s.val),
        "test": (s.train + s.val, 1.0 + 1e-9),
    }[name]
    u = position(batch, dataset)
    return batch.filter(pa.array((u >= edges[0]) & (u < edges[1])))


def split(ds, dataset: DatasetConfig) -> dict:
    """Lazy train/val/test Ray Datasets of `ds`."""
    return {
        name: ds.map_batches(
            keep, fn_kwargs={"dataset": dataset, "name": name}, batch_format="pyarrow"
        )
        for name in SPLITS
    }

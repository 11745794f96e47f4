"""The drift knobs of `dataset.source.drift` applied to real rows (traffic replayed from files).

They mean what they mean for the synthetic generators (keel.data.synthetic), which shift while
generating; rows read from files are shifted after the fact:

- `covariate: {column: shift}`: a numeric column moves by `shift` x its standard deviation in
  these rows; a category or bool column moves a `shift` share of its non-null rows to its least
  common value (of `allowed` when declared, else of the values in these rows).
- `concept` in [0, 1]: that share of the labeled rows gets a label the old relation gets wrong:
  a class becomes the next class in sorted order (cyclic; the sorted order is the model head's
  class order), a regression target is mirrored around its mean (2 * mean - y).

Shifted values stay inside the column's declared [min, max] (ints are rounded): the serving
schema refuses a request outside them with 422, and drifted traffic must be served to show as
drift, not as refused requests; clipped labels stay valid rows for retraining. Every function
is pure: (table, dataset, seed) -> table, over pyarrow and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from keel.config.schema import ColumnSpec, ColumnType, DatasetConfig, Task
from keel.errors import ConfigError

_NUMERIC = (ColumnType.int, ColumnType.float)
_CATEGORICAL = (ColumnType.category, ColumnType.bool)
# independent random streams under one seed: shifting a column leaves the relabelled rows alone
_COVARIATE, _CONCEPT = 1, 2


def apply(table: pa.Table, dataset: DatasetConfig, seed: int) -> pa.Table:
    """`dataset.source.drift` (covariate, then concept) applied to the rows of `table`."""
    knobs = dataset.source.drift
    return concept(covariate(table, dataset, knobs.covariate, seed), dataset, knobs.concept, seed)


def covariate(
    table: pa.Table, dataset: DatasetConfig, shifts: Mapping[str, float], seed: int
) -> pa.Table:
    """Each named input column shifted: numbers by shift x std, categories by a share moved."""
    rng = np.random.default_rng([seed, _COVARIATE])
    for name, shift in shifts.items():
        spec = _shiftable(dataset, name, shift)
        col = table.column(name)
        if ColumnType(spec.type) in _NUMERIC:
            moved = shift_numeric(col, shift, spec)
        else:
            moved = shift_category(col, shift, _domain(spec, col), rng)
        table = table.set_column(table.column_names.index(name), name, moved)
    return table


def shift_numeric(col: pa.ChunkedArray | pa.Array, shift: float, spec: ColumnSpec) -> pa.Array:
    """Values + shift x their standard deviation, kept in the declared range; nulls stay."""
    x = _floats(col)
    return _typed(x + shift * np.nanstd(x), col.type, spec)


def shift_category(
    col: pa.ChunkedArray | pa.Array, share: float, domain: list, rng: np.random.Generator
) -> pa.Array:
    """`share` of the non-null values (chosen by rng) replaced by the least common value of
    `domain` in the column (the first of the rarest, in domain order)."""
    x = _objects(col)
    rare = domain[int(np.argmin([np.sum(x == v) for v in domain]))]
    x[_chosen(rng, ~_nulls(col), share)] = rare
    return pa.array(x, type=col.type)


def concept(table: pa.Table, dataset: DatasetConfig, share: float, seed: int) -> pa.Table:
    """`share` of the labeled rows (chosen by the seed) relabelled: the next class, cyclic in
    sorted order, or the regression target mirrored around its mean."""
    if not share:
        return table
    name = dataset.target
    col, spec = table.column(name), dataset.columns[name]
    rows = _chosen(np.random.default_rng([seed, _CONCEPT]), ~_nulls(col), share)
    if Task(dataset.task) == Task.regression:
        y = _floats(col)
        mean = np.nanmean(y) if rows.any() else 0.0
        relabelled = _typed(np.where(rows, 2 * mean - y, y), col.type, spec)
    else:
        classes = _domain(spec, col)
        following = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
        y = _objects(col)
        y[rows] = [following[v] for v in y[rows]]
        relabelled = pa.array(y, type=col.type)
    return table.set_column(table.column_names.index(name), name, relabelled)


# ----------------------------------------------------------------------------- helpers


def _shiftable(dataset: DatasetConfig, name: str, shift: float) -> ColumnSpec:
    """The spec of a column a covariate knob may move: an input (not the target, id or
    timestamp) that is numeric, a category or a bool; a share is in [0, 1]."""
    spec = dataset.columns.get(name)
    kind = None if spec is None else ColumnType(spec.type)
    key = "dataset.source.drift.covariate"
    special = (dataset.target, dataset.id_column, dataset.timestamp_column)
    if name in special or kind not in (*_NUMERIC, *_CATEGORICAL):
        raise ConfigError(f"{key}: '{name}' is not a feature column of '{dataset.name}'")
    if kind in _CATEGORICAL and not 0 <= shift <= 1:
        raise ConfigError(f"{key}: share for '{name}' must be in [0, 1] (got {shift})")
    return spec


def _domain(spec: ColumnSpec, col: pa.ChunkedArray | pa.Array) -> list:
    """A categorical column's values, sorted: declared, both booleans, or those present."""
    if spec.allowed:
        return sorted(spec.allowed)
    if ColumnType(spec.type) == ColumnType.bool:
        return [False, True]
    return sorted(set(col.drop_null().to_pylist()))


def _chosen(rng: np.random.Generator, candidates: np.ndarray, share: float) -> np.ndarray:
    """A mask of round(share x candidates) of the candidate rows, drawn without replacement."""
    where = np.flatnonzero(candidates)
    mask = np.zeros(len(candidates), bool)
    mask[rng.choice(where, round(share * len(where)), replace=False)] = True
    return mask


def _typed(values: np.ndarray, kind: pa.DataType, spec: ColumnSpec) -> pa.Array:
    """Floats back in the column's type: clipped into [min, max], rounded for ints, NaN null."""
    lo = -np.inf if spec.min is None else spec.min
    hi = np.inf if spec.max is None else spec.max
    missing = np.isnan(values)
    values = np.clip(values, lo, hi)
    if pa.types.is_integer(kind):
        values = np.where(missing, 0, np.round(values)).astype(np.int64)
    return pa.array(values, type=kind, mask=missing)


def _floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64)  # nulls are NaN


def _objects(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.array(col.to_pylist(), dtype=object)


def _nulls(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)

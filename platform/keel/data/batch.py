"""Batch plumbing shared by validation, features and serving.

A batch is a pyarrow Table (what Ray Data hands map_batches with batch_format="pyarrow"), a
dict of numpy arrays, a pandas DataFrame, or a list of row dicts (a JSON request). The column
readers return numpy arrays with nulls as NaN (numbers), None (strings) or NaT (timestamps).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Batch = pa.Table | dict | pd.DataFrame | list
S = TypeVar("S")


def to_table(batch: Batch) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pd.DataFrame):
        return pa.Table.from_pandas(batch, preserve_index=False)
    if isinstance(batch, list):
        return pa.Table.from_pylist(batch)
    return pa.table(
        {k: np.asarray(v) if not isinstance(v, pa.Array) else v for k, v in batch.items()}
    )


def numeric(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return pd.to_numeric(pd.Series(col.to_pylist(), dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    if pa.types.is_boolean(col.type) or pa.types.is_null(col.type):
        col = pc.cast(col, pa.float64())
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def strings(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if pa.types.is_floating(col.type):  # JSON readers give 1.0 for the category "1"
            return np.array([_float_text(v) for v in col.to_pylist()], dtype=object)
        col = pc.cast(col, pa.string())
    return col.to_numpy(zero_copy_only=False)


def text(table: pa.Table, name: str) -> pa.Array:
    """A column as an Arrow string array (nulls stay null): categories without Python objects."""
    col = table.column(name)
    if pa.types.is_floating(col.type):
        return pa.array(strings(table, name), pa.string())
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return col.combine_chunks()


def _float_text(v: float | None) -> str | None:
    if v is None or v != v:
        return None
    return str(int(v)) if float(v).is_integer() else repr(v)


def timestamps(table: pa.Table, name: str, format: str | None = None) -> np.ndarray:
    """A column as naive UTC datetime64[us]; text is read by `format` (strptime directives)
    where given, and as ISO 8601 where it does not match, so a file's own spelling and a JSON
    client's ISO times both work. Zoned times are converted to UTC; unreadable text is NaT."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        if col.type.tz is not None:
            col = pc.cast(col, pa.timestamp(col.type.unit))
        return col.to_numpy(zero_copy_only=False).astype("datetime64[us]")
    text = pd.Series(col.to_pylist(), dtype=object)
    values = _utc_times(text, format or "ISO8601")
    if format and (retry := values.isna() & text.notna()).any():
        values[retry] = _utc_times(text[retry], "ISO8601")
    return values.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def _utc_times(text: pd.Series, format: str) -> pd.Series:
    return pd.to_datetime(text, errors="coerce", utc=True, format=format)


def reduce_batches(
    data: Any, partial: Callable[[pa.Table], S], merge: Callable[[S, S], S], batch_size: int
) -> S:
    """Fold `partial(batch)` over every batch with `merge`.

    On a Ray Dataset the partials are computed in parallel tasks and only they (small
    summaries, never rows) travel to the driver; a local table is folded in-process.
    """
    if isinstance(data, pa.Table | pd.DataFrame | dict | list):
        table = to_table(data)
        parts = [
            partial(table.slice(i, batch_size)) for i in range(0, max(len(table), 1), batch_size)
        ]
    else:
        summaries = data.map_batches(
            _pickled(partial), batch_format="pyarrow", batch_size=batch_size, zero_copy_batch=True
        ).take_all()
        parts = [pickle.loads(row["partial"]) for row in summaries]
        if not parts:
            parts = [partial(pa.table({}))]
    return functools.reduce(merge, parts)


def _pickled(partial: Callable[[pa.Table], Any]) -> Callable[[pa.Table], dict]:
    def run(batch: pa.Table) -> dict:
        return {"partial": [pickle.dumps(partial(batch))]}

    return run


def fingerprint(data: Any) -> str:
    """Content hash of a dataset: its schema, row count and the sum of its row hashes.

    The sum makes it mergeable and independent of row order and block layout, so a Ray
    Dataset is fingerprinted in parallel without moving its rows.
    """

    def part(batch: pa.Table) -> tuple[int, int, str]:
        schema = ",".join(f"{f.name}:{f.type}" for f in batch.schema)
        if not len(batch):
            return 0, 0, schema
        rows = pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy()
        return int(rows.sum(dtype=np.uint64)), len(batch), schema

    def merge(a: tuple, b: tuple) -> tuple:
        return (a[0] + b[0]) % (1 << 64), a[1] + b[1], a[2] if a[1] else b[2]

    total, rows, schema = reduce_batches(data, part, merge, batch_size=65_536)
    digest = hashlib.sha256(f"{schema}|{rows}|{total}".encode()).hexdigest()[:16]
    return f"rows={rows}:{digest}"


def json_rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows as a JSON client sends them: timestamps as ISO 8601 strings, NaN as null."""
    table = table.drop_columns([c for c in drop if c in table.column_names])
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_nan(col), None, col)
        cols[name] = col
    return pa.table(cols).to_pylist()

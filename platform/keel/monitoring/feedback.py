"""`keel feedback FILE`: ground-truth labels from a file into the feedback log.

Labels often arrive in bulk (an export, a nightly job) rather than through POST /v1/feedback.
A file's rows land in the same log, stored the same way (the label as JSON text, its type as the
file gives it), so monitoring cannot tell which way a label came. A row without a request id or
a label is refused on its own and reported by row number; the others still land.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from keel import prediction_log as plog
from keel import storage
from keel.errors import DataError

REQUEST_ID, LABEL = "request_id", "label"
FORMATS = (".csv", ".parquet")
SHOWN = 5  # refused row numbers named per reason


def _textual(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


# the label types the endpoint takes (a null column is read: its rows are refused one by one)
LABEL_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    _textual,
    pa.types.is_null,
)


@dataclass
class Ingested:
    """What a file held and where its labels went."""

    file: str
    rows: int
    accepted: int
    refused: dict[str, list[int]] = field(default_factory=dict)  # reason -> 1-based data rows
    paths: list[str] = field(default_factory=list)


def ingest(file: str, logs: str) -> Ingested:
    """Append the file's valid (request_id, label) rows to `<logs>/feedback/`."""
    table = read_labels(file)
    ts = plog.now()
    refused: dict[str, list[int]] = {"no request_id": [], "no label": []}
    rows = []
    ids, labels = table[REQUEST_ID].to_pylist(), table[LABEL].to_pylist()
    for n, (request_id, label) in enumerate(zip(ids, labels, strict=True), start=1):
        if request_id is None or not request_id.strip():
            refused["no request_id"].append(n)
        elif not is_label(label):
            refused["no label"].append(n)
        else:
            rows.append({REQUEST_ID: request_id, "ts": ts, LABEL: json.dumps(label)})
    paths = _write(rows, logs) if rows else []
    refused = {reason: at for reason, at in refused.items() if at}
    return Ingested(file, table.num_rows, len(rows), refused, paths)


def read_labels(file: str) -> pa.Table:
    """The file's request_id (as text) and label columns; DataError names what is wrong."""
    suffix = PurePosixPath(file).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{file}: expected a .csv or .parquet file of request_id,label")
    fs, path = storage.resolve(file)
    kind = fs.get_file_info(path).type
    if kind != pafs.FileType.File:
        what = "no such file" if kind == pafs.FileType.NotFound else "not a file"
        raise DataError(f"{file}: {what}")
    try:
        table = _read(fs, path, suffix)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{file}: not a readable {suffix[1:]} file ({e})") from None
    missing = [c for c in (REQUEST_ID, LABEL) if c not in table.column_names]
    if missing:
        found = ", ".join(table.column_names) or "none"
        raise DataError(
            f"{file}: needs columns request_id and label; missing {', '.join(missing)} "
            f"(columns: {found})"
        )
    label = table.schema.field(LABEL).type
    if not any(is_kind(label) for is_kind in LABEL_TYPES):
        raise DataError(f"{file}: column label has type {label}: use numbers, booleans or text")
    ids = table[REQUEST_ID]
    ids = ids if _textual(ids.type) else ids.cast(pa.string())
    return pa.table({REQUEST_ID: ids, LABEL: table[LABEL]})


def _read(fs: pafs.FileSystem, path: str, suffix: str) -> pa.Table:
    if suffix == ".parquet":
        return pq.read_table(path, filesystem=fs)
    options = pacsv.ConvertOptions(
        column_types={REQUEST_ID: pa.string()},
        strings_can_be_null=True,  # "" and NA: missing
    )
    with fs.open_input_stream(path) as f:
        return pacsv.read_csv(f, convert_options=options)


def is_label(value: Any) -> bool:
    """A value the feedback log keeps as a label: not null, NaN, infinite or empty."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is not None and value != ""


def _write(rows: list[dict[str, Any]], logs: str) -> list[str]:
    table = pa.Table.from_pylist(rows, schema=plog.FEEDBACK_SCHEMA)
    return plog.write(plog.feedback_dir(logs), table)


def describe(result: Ingested) -> list[tuple[str, str]]:
    """Summary lines for the job."""
    refused = sum(len(at) for at in result.refused.values())
    lines = [
        ("file", result.file),
        ("rows read", f"{result.rows:,}"),
        ("accepted", f"{result.accepted:,}"),
        ("refused", f"{refused:,}"),
    ]
    for reason, at in result.refused.items():
        shown = ", ".join(map(str, at[:SHOWN])) + (", ..." if len(at) > SHOWN else "")
        lines.append((f"  {reason}", f"{len(at):,} (data rows {shown})"))
    lines.append(("written", "\n".join(result.paths) or "nothing: no valid row"))
    return lines

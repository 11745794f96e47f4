"""Where a dataset's rows come from: a synthetic generator or parquet/csv/json files.

Files are read with Ray Data (`read`) or, for a client that must not start Ray, with pyarrow
in-process (`read_table`); both follow the same rules, kept here: a column is read under its
name in the file (`source`) and renamed to its key, the null spellings of
`dataset.source.null_values` are nulls in CSV cells and JSON strings, and CSV cells are read as
text so the schema casts them. Before reading, each file's header is checked against the
declared columns so a missing or unexpected column is reported with the file that has it, and
a file that fails to parse is named in the error.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from keel.config.schema import ColumnType, DatasetConfig, SourceConfig, SourceFormat
from keel.errors import ConfigError, DataError
from keel.storage import resolve, same_scheme

from . import synthetic

PATH_COLUMN = "_source_file"  # which file a row came from (file sources only)
SUFFIXES = {SourceFormat.parquet: ".parquet", SourceFormat.csv: ".csv", SourceFormat.json: ".json"}
READ_PATH = "path"  # the file column Ray's include_paths adds; read_table adds it too


def read(dataset: DatasetConfig):
    """A lazy Ray Dataset of the raw rows (not yet validated)."""
    import ray

    src = dataset.source
    if src.format == SourceFormat.synthetic:
        name = src.generator or dataset.name
        if name not in synthetic.GENERATORS:
            known = ", ".join(synthetic.GENERATORS)
            raise ConfigError(
                f"dataset.source.generator: unknown generator '{name}'; known: {known}"
            )
        n = synthetic.chunk_count(dataset)
        return ray.data.range(n, override_num_blocks=n).map_batches(
            _generate, batch_size=1, fn_kwargs={"dataset": dataset}, batch_format="numpy"
        )
    files = list_files(src.path, src.format)
    for f in files:
        check_header(f, src.format, dataset)
    fs, _ = resolve(src.path)
    opts = dict(filesystem=fs, include_paths=True)
    if src.format == SourceFormat.parquet:
        ds = ray.data.read_parquet(files, **opts)
    elif src.format == SourceFormat.csv:
        ds = ray.data.read_csv(files, convert_options=csv_options(dataset), **opts)
    else:
        ds = ray.data.read_json(files, **opts)  # newline-delimited JSON objects
    return ds.map_batches(
        tidy, fn_kwargs={"dataset": dataset}, batch_format="pyarrow", zero_copy_batch=True
    )


def read_table(dataset: DatasetConfig, path: str | None = None) -> pa.Table:
    """The raw rows (not yet validated) of a file dataset, or of another file or directory of
    its format at `path`, read in this process with pyarrow: for clients that must not start
    Ray (`keel simulate`). The same header checks and reading rules as `read`."""
    src = dataset.source
    if src.format == SourceFormat.synthetic:
        raise ConfigError(f"dataset '{dataset.name}' is synthetic: it has no files to read")
    key = "dataset.source.path" if path is None else "simulate.path"
    files = list_files(path or src.path, src.format, key)
    tables = []
    for f in files:
        check_header(f, src.format, dataset)
        table = _read_file(f, dataset)
        tables.append(table.append_column(READ_PATH, pa.array([f] * len(table), pa.string())))
    # files of one dataset may differ in inferred types (an int column, a float one)
    return tidy(pa.concat_tables(tables, promote_options="permissive"), dataset)


def tidy(batch: pa.Table, dataset: DatasetConfig) -> pa.Table:
    """A batch as read from the files -> the declared columns under their keys.

    Each column is renamed from its name in the file to its key, and the reader's file column
    to PATH_COLUMN. JSON has no reader option for null spellings, so its string values in
    `null_values` become nulls here (the CSV reader did that for its cells), and a nullable key
    that no row of the batch has is a column of nulls, as it is when only some rows lack it.
    """
    keys = {name: key for key, name in file_names(dataset).items()} | {READ_PATH: PATH_COLUMN}
    batch = batch.rename_columns([keys.get(c, c) for c in batch.column_names])
    if dataset.source.format != SourceFormat.json:
        return batch
    nulls = pa.array(null_texts(dataset.source), pa.string())
    for i, field in enumerate(batch.schema):
        if field.name != PATH_COLUMN and pa.types.is_string(field.type):
            col = batch.column(i)
            hit = pc.fill_null(pc.is_in(col, value_set=nulls), False)
            batch = batch.set_column(i, field.name, pc.if_else(hit, None, col))
    for key, spec in dataset.columns.items():
        if spec.nullable and key not in batch.column_names:
            batch = batch.append_column(key, pa.nulls(len(batch)))
    return batch


def file_names(dataset: DatasetConfig) -> dict[str, str]:
    """Declared column key -> the column's name in the files."""
    return {key: spec.source or key for key, spec in dataset.columns.items()}


def null_texts(src: SourceConfig) -> list[str]:
    """`null_values` in each usual capitalization (NA/na, null/NULL, NaN/nan): a file's null
    spelling is a habit of the tool that wrote it, never a value differing only in case."""
    variants = (str.lower, str.upper, str.capitalize, str)
    return sorted({f(v) for v in src.null_values for f in variants})


def csv_options(dataset: DatasetConfig) -> pacsv.ConvertOptions:
    """Every declared column as text, null spellings as nulls: type problems become per-row
    validation failures, not crashes (quoted numbers are text like any other)."""
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in file_names(dataset).values()},
        null_values=null_texts(dataset.source),
        strings_can_be_null=True,
    )


def _read_file(path: str, dataset: DatasetConfig) -> pa.Table:
    """One file read whole with pyarrow; an unreadable one is a DataError naming it."""
    fmt = dataset.source.format
    fs, p = resolve(path)
    try:
        with fs.open_input_stream(p) as f:
            data = f.read()
        if fmt == SourceFormat.parquet:
            return pq.read_table(io.BytesIO(data))
        data.decode("utf-8")  # Arrow's own message for bad UTF-8 names no byte
        if fmt == SourceFormat.csv:
            return pacsv.read_csv(io.BytesIO(data), convert_options=csv_options(dataset))
        return pajson.read_json(io.BytesIO(data))
    except UnicodeDecodeError as e:
        raise DataError(_not_utf8(path, e)) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: cannot parse as {fmt.value}: {_first_line(e)}") from None


def _generate(batch: dict, dataset: DatasetConfig) -> pa.Table:
    return synthetic.generate_chunk(dataset, int(batch["id"][0]))


def list_files(path: str, fmt: SourceFormat, key: str = "dataset.source.path") -> list[str]:
    """The files behind a path (as URIs like it): the file itself, or a directory's files with
    the format's suffix. `key` is the config key that gave the path, for the errors."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{path}: no such file or directory ({key})")
    if info.type == pafs.FileType.File:
        return [path]
    sel = pafs.FileSelector(p, recursive=True)
    files = sorted(
        same_scheme(path, i.path)
        for i in fs.get_file_info(sel)
        if i.is_file and i.path.endswith(SUFFIXES[fmt])
    )
    if not files:
        raise DataError(f"{path}: no {SUFFIXES[fmt]} files in this directory ({key})")
    return files


def header(path: str, fmt: SourceFormat) -> list[str]:
    """Column names of one file, read without loading its rows."""
    fs, p = resolve(path)
    if fs.get_file_info(p).size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt == SourceFormat.parquet:
            with fs.open_input_file(p) as f:
                return pq.read_schema(f).names
        with fs.open_input_stream(p) as f:  # the first line; a BOM is no part of a name
            first = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
        if fmt == SourceFormat.csv:
            return next(csv.reader([first]))
        return list(json.loads(first))
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(_not_utf8(path, e)) from None
    except (pa.ArrowInvalid, ValueError, IndexError, OSError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as {fmt.value}: {_first_line(e)}") from None


def _not_utf8(path: str, e: UnicodeDecodeError) -> str:
    return (
        f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
        "re-save the file as UTF-8"
    )


def check_header(path: str, fmt: SourceFormat, dataset: DatasetConfig) -> None:
    """Every declared column is in the file under its name there, and nothing else is; errors
    name the file and the file's column."""
    names = header(path, fmt)
    wanted = file_names(dataset)
    # a JSON row may leave out a nullable key: it is null there, not a missing column
    optional = fmt == SourceFormat.json
    missing = {
        key: name
        for key, name in wanted.items()
        if name not in names and not (optional and dataset.columns[key].nullable)
    }
    extra = [c for c in names if c not in wanted.values()]
    _suggest_source(path, dataset, missing, extra)
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(map(_as_declared, missing.items()))} declared "
            f"in dataset.columns (found: {', '.join(names)})"
        )
    if extra:
        raise DataError(
            f"{path}: unexpected column(s) {', '.join(map(repr, extra))}; declare them in "
            f"dataset.columns or remove them from the file"
            + "".join(f"; e.g. {_declaration(plain(c), '...', c)}" for c in extra if plain(c) != c)
        )


def plain(name: str) -> str:
    """A file's column name as a config key: 'Flipper Length (mm)' -> 'flipper_length_mm'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _suggest_source(path: str, dataset: DatasetConfig, missing: dict, extra: list[str]) -> None:
    """A declared key that the file spells differently (case, spaces, symbols) is one config
    line away: say which, rather than report it missing and the file's column unexpected."""
    for column in extra:
        key = next((k for k, n in missing.items() if k == n and plain(k) == plain(column)), None)
        if key is not None:
            kind = ColumnType(dataset.columns[key].type).value
            raise DataError(
                f"column {column!r} in {path} is not declared; declare it as e.g. "
                f"{_declaration(key, kind, column)}"
            )


def _declaration(key: str, kind: str, column: str) -> str:
    return f"{key}: {{type: {kind}, source: {column!r}}}"


def _as_declared(item: tuple[str, str]) -> str:
    key, name = item
    return repr(name) if key == name else f"{name!r} (the source of {key})"


def diagnose(dataset: DatasetConfig, error: Exception) -> DataError:
    """After Ray failed to read the files, find the file that breaks and say why."""
    src = dataset.source
    for path in list_files(src.path, src.format):
        try:
            _read_file(path, dataset)
        except DataError as e:
            return e
    return DataError(f"{src.path}: reading failed: {_first_line(error)}")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

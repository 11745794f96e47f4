"""Where a dataset's rows come from: a synthetic generator or parquet/csv/json files.

Files are read with Ray Data from local paths or any pyarrow filesystem URI. Before reading,
each file's header is checked against the declared columns so a missing or unexpected column
is reported with the file that has it, and a file that fails to parse is named in the error.
"""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from keel.config.schema import DatasetConfig, SourceFormat
from keel.errors import ConfigError, DataError
from keel.storage import resolve, same_scheme

from . import synthetic

PATH_COLUMN = "_source_file"  # which file a row came from (file sources only)
SUFFIXES = {SourceFormat.parquet: ".parquet", SourceFormat.csv: ".csv", SourceFormat.json: ".json"}


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
        # Every column as text: type problems become per-row validation failures, not crashes.
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in dataset.columns}, strings_can_be_null=True
        )
        ds = ray.data.read_csv(files, convert_options=convert, **opts)
    else:
        ds = ray.data.read_json(files, **opts)  # newline-delimited JSON objects
    return ds.rename_columns({"path": PATH_COLUMN})


def _generate(batch: dict, dataset: DatasetConfig) -> pa.Table:
    return synthetic.generate_chunk(dataset, int(batch["id"][0]))


def list_files(path: str, fmt: SourceFormat) -> list[str]:
    """The files behind a path (as URIs like it): the file itself, or a directory's files with
    the format's suffix."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{path}: no such file or directory (dataset.source.path)")
    if info.type == pafs.FileType.File:
        return [path]
    sel = pafs.FileSelector(p, recursive=True)
    files = sorted(
        same_scheme(path, i.path)
        for i in fs.get_file_info(sel)
        if i.is_file and i.path.endswith(SUFFIXES[fmt])
    )
    if not files:
        raise DataError(f"{path}: no {SUFFIXES[fmt]} files in this directory (dataset.source.path)")
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
    names = header(path, fmt)
    # a JSON row may leave out a nullable key: it is null there, not a missing column
    optional = fmt == SourceFormat.json
    missing = [
        c
        for c, spec in dataset.columns.items()
        if c not in names and not (optional and spec.nullable)
    ]
    extra = [c for c in names if c not in dataset.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))} declared in "
            f"dataset.columns (found: {', '.join(names)})"
        )
    if extra:
        raise DataError(
            f"{path}: unexpected column(s) {', '.join(map(repr, extra))}; declare them in "
            f"dataset.columns or remove them from the file"
        )


def diagnose(dataset: DatasetConfig, error: Exception) -> DataError:
    """After Ray failed to read the files, find the file that breaks and say why."""
    src = dataset.source
    for path in list_files(src.path, src.format):
        fs, p = resolve(path)
        try:
            with fs.open_input_stream(p) as f:
                data = f.read()
            if src.format != SourceFormat.parquet:
                data.decode("utf-8")
            if src.format == SourceFormat.csv:
                pacsv.read_csv(
                    io.BytesIO(data),
                    convert_options=pacsv.ConvertOptions(
                        column_types={c: pa.string() for c in dataset.columns}
                    ),
                )
            elif src.format == SourceFormat.json:
                pajson.read_json(io.BytesIO(data))
            else:
                pq.read_table(io.BytesIO(data))
        except UnicodeDecodeError as e:
            return DataError(_not_utf8(path, e))
        except (pa.ArrowInvalid, OSError) as e:
            return DataError(f"{path}: cannot parse as {src.format.value}: {_first_line(e)}")
    return DataError(f"{src.path}: reading failed: {_first_line(error)}")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

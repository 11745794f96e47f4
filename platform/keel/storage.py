"""Reading and writing run outputs on local paths or any pyarrow filesystem URI (s3://, gs://)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)


def same_scheme(base: str, fs_path: str) -> str:
    """A filesystem's path (no scheme, as pyarrow and Ray report them) as a URI like base."""
    scheme, sep, _ = base.partition("://")
    return f"{scheme}://{fs_path}" if sep and "://" not in fs_path else fs_path


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def stamp() -> str:
    """A sortable, filesystem-safe run id (UTC to the millisecond)."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"


def write_bytes(uri: str, data: bytes) -> None:
    """Write through a hidden temporary name and move, so readers never see a partial file
    (dataset readers skip names starting with '.')."""
    fs, path = resolve(uri)
    parent, _, name = path.rpartition("/")
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.tmp-{time.time_ns()}"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)
    except OSError:
        # a retried write (a disk full, a store down) must not fill the disk with its tries
        with contextlib.suppress(OSError):  # never created, or the store is still down
            fs.delete_file(tmp)
        raise


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as parquet file content, for write_bytes (atomic, any filesystem)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def list_dir(uri: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """Entries under a directory; empty when it does not exist. Their .path is the
    filesystem's (no s3:// scheme): address an entry as join(uri, entry.base_name)."""
    fs, path = resolve(uri)
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=recursive)
    # pyarrow's local listing of a directory that another process is creating at that moment
    # can fail as not found despite allow_not_found (the registry's writers met it): listed
    # again, the directory exists or it does not
    for _ in range(LIST_TRIES - 1):
        with contextlib.suppress(FileNotFoundError):
            return fs.get_file_info(selector)
    return fs.get_file_info(selector)


LIST_TRIES = 5


def delete_dir(uri: str) -> None:
    fs, path = resolve(uri)
    fs.delete_dir(path)


def delete_file(uri: str) -> None:
    fs, path = resolve(uri)
    fs.delete_file(path)


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(uri: str) -> Any:
    return json.loads(read_text(uri))


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound

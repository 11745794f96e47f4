"""Write the dataset, features and experiment configs for your own data file.

FILE is a .csv, .parquet or newline-delimited .json/.jsonl file, a directory of them, or a
pyarrow filesystem URI (s3://bucket/data/). A sample of its rows (--sample, default 20,000) is
read with pyarrow (no Ray is started) and keel.data.infer proposes column types and ranges, the
id and timestamp columns, the task, features, slices and a quality floor; conf/dataset/NAME.yaml,
conf/features/NAME.yaml and conf/experiment/NAME.yaml are written (never over existing files
without --force) and checked with keel's config loader. NAME defaults to the file's stem.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq
from rich.markup import escape
from rich.table import Table

from keel import scaffold
from keel.app import Flag, Summary, command_line, console, setup_logging, usage
from keel.config import conf_dir, load, project_root
from keel.config.schema import NULL_VALUES, SourceConfig, SourceFormat, Task
from keel.data import infer as rules
from keel.data.sources import header, list_files
from keel.errors import ConfigError, DataError, KeelError
from keel.storage import resolve

GROUPS = "dataset features experiment"  # the config groups it reads
SAMPLE_ROWS = 20_000
WORDS = "FILE"  # no overrides: the configs are written, not composed
FLAGS = {
    "--target": Flag(str, "the column to predict", "COLUMN", required=True),
    "--name": Flag(str, "the dataset's name (default: FILE's stem)", "NAME"),
    "--task": Flag(str, "binary, multiclass or regression (default: inferred)", "TASK"),
    "--sample": Flag(int, f"rows read to infer from (default {SAMPLE_ROWS:,})", "ROWS"),
    "--format": Flag(str, "the files' format (default: from their names)", "csv|parquet|json"),
    "--null-values": Flag(str, "the cells that mean missing (default: keel's)", "'NA,-'"),
    "--force": Flag(bool, "write over existing config files"),
}
FORMATS = (SourceFormat.csv, SourceFormat.parquet, SourceFormat.json)


@dataclass(frozen=True)
class Request:
    path: str
    target: str
    name: str
    task: Task | None
    sample: int
    fmt: SourceFormat | None
    null_values: list[str] | None  # None: keel's defaults
    force: bool


def parse(argv: Sequence[str]) -> Request:
    """FILE and the flags; a missing FILE or --target prints the usage and exits 2."""
    flags, positional = command_line(__name__, argv)
    if len(positional) != 1 or "--target" not in flags:
        print(usage(sys.modules[__name__]))  # whole: a console would wrap it
        sys.exit(2)
    path = positional[0]
    sample = flags.get("--sample", SAMPLE_ROWS)
    if sample < 1:
        raise ConfigError(f"--sample must be >= 1, got {sample}")
    fmt = flags.get("--format")
    nulls = flags.get("--null-values")
    return Request(
        path=path,
        target=flags["--target"],
        name=rules.check_name(flags.get("--name") or rules.dataset_name(path)),
        task=rules.parse_task(flags["--task"]) if "--task" in flags else None,
        sample=sample,
        fmt=_format(fmt) if fmt else None,
        null_values=[v.strip() for v in nulls.split(",")] if nulls is not None else None,
        force=flags.get("--force", False),
    )


def _format(text: str) -> SourceFormat:
    if text not in [f.value for f in FORMATS]:
        raise ConfigError(f"--format {text!r}: choose csv, parquet or json")
    return SourceFormat(text)


def source_format(path: str, given: SourceFormat | None = None) -> SourceFormat:
    """The format given, else a file's from its suffix, a directory's from the one format its
    files have; a missing path is an error before anything is started."""
    fs, p = resolve(path)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.NotFound:
        raise DataError(f"{path}: no such file or directory")
    fmt = given or rules.format_from_suffix(path)
    if fmt is not None:
        return fmt
    if kind == pafs.FileType.File:
        raise DataError(f"{path}: its name does not say csv, parquet or json; add --format")
    found = [f for f in FORMATS if _has_files(path, f)]
    if len(found) != 1:
        what = "several formats" if found else "no .csv, .parquet or .json files"
        raise DataError(f"{path}: {what}; name one with --format csv|parquet|json")
    return found[0]


def _has_files(directory: str, fmt: SourceFormat) -> bool:
    try:
        return bool(list_files(directory, fmt))
    except DataError:
        return False


def source_path(path: str) -> str:
    """The path as the dataset file holds it: a URI as given; a local path relative to the
    project root when inside it (the config resolves it from there), else absolute."""
    if "://" in path:
        return path
    full = Path(path).expanduser().resolve()
    try:
        return full.relative_to(project_root()).as_posix()
    except ValueError:
        return str(full)


def read_sample(path: str, source: SourceConfig, rows: int) -> tuple[pa.Table, int | None]:
    """The first `rows` rows of the files in order as one Arrow table (CSV cells as text), and
    the row count of all files when it is cheap: parquet metadata, or a sample that already
    holds every row. Read here with pyarrow's streaming readers, a batch at a time, and never
    more of a file than the sample needs: starting a Ray to read 20,000 rows took 8 s of an
    11 s `keel init`, and the rows were read by pyarrow there too."""
    fmt = source.format
    files = list_files(path, fmt)
    csv = fmt == SourceFormat.csv
    options = rules.csv_text_options(header(files[0], fmt), source) if csv else None
    tables, have = [], 0
    try:
        for file in files:
            batches = []
            for batch in _batches(file, fmt, options):
                batches.append(batch)
                have += len(batch)
                if have >= rows:
                    break
            if batches:
                tables.append(pa.Table.from_batches(batches))
            if have >= rows:
                break
        full = have >= rows
        parquet = fmt == SourceFormat.parquet
        total = sum(_parquet_rows(f) for f in files) if full and parquet else None
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {fmt.value}: {first}") from None
    # files of one dataset may differ in inferred types (an int column, a float one)
    sample = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    return (sample.slice(0, rows), total) if full else (sample, len(sample))


def _batches(
    file: str, fmt: SourceFormat, options: pacsv.ConvertOptions | None
) -> Iterator[pa.RecordBatch]:
    """A file's rows a batch at a time (compressed files by their suffix)."""
    fs, p = resolve(file)
    if fmt == SourceFormat.parquet:
        with fs.open_input_file(p) as f:
            yield from pq.ParquetFile(f).iter_batches()
        return
    with fs.open_input_stream(p) as f:
        reader = (
            pacsv.open_csv(f, convert_options=options)
            if fmt == SourceFormat.csv
            else pajson.open_json(f)
        )
        yield from reader


def _parquet_rows(file: str) -> int:
    fs, p = resolve(file)
    with fs.open_input_file(p) as f:
        return pq.ParquetFile(f).metadata.num_rows


def init(req: Request) -> Summary:
    root, conf = project_root(), conf_dir()
    scaffold.refuse_existing(scaffold.paths(conf, req.name).values(), req.force)  # before reading
    fmt = source_format(req.path, req.fmt)
    nulls = req.null_values if req.null_values is not None else list(NULL_VALUES)
    where = source_path(req.path)
    source = SourceConfig(format=fmt, path=where, null_values=nulls)
    sample, total = read_sample(req.path, source, req.sample)
    inf = rules.infer(sample, target=req.target, name=req.name, source=source, task=req.task)
    written = scaffold.write(
        scaffold.render(inf, scaffold.Origin(where, total), conf), force=req.force
    )
    try:  # what was written composes and passes keel's checks
        load([f"experiment={inf.name}"])
    except ConfigError as e:
        raise ConfigError(f"the written configs fail keel's checks; fix them: {e}") from None
    console.print(columns_table(inf))
    return summary(inf, scaffold.Origin(where, total), scaffold.relative(written, root))


def columns_table(inf: rules.Inference) -> Table:
    """One row per column: what was inferred and what it becomes."""
    table = Table(title=f"{inf.name}: {len(inf.profiles)} columns", title_justify="left")
    for head in ("column", "type", "nullable", "seen", "role", "feature"):
        table.add_column(head, overflow="fold")
    for p, choice in zip(inf.profiles, inf.choices, strict=True):
        name = p.key if p.key == p.source else f"{p.key} ({p.source})"
        if choice.spec is None:
            feature = f"({choice.reason})"
        else:
            feature = choice.spec.transform.value + (f": {choice.reason}" if choice.reason else "")
        table.add_row(
            escape(name),
            p.type.value + (f" {p.format}" if p.format else ""),
            "yes" if p.nullable else "",
            escape(_seen(p)),
            inf.role(p.key).value,
            escape(feature),
        )
    return table


def _seen(p: rules.Profile) -> str:
    if p.low is not None:
        return f"{p.low:g}..{p.high:g}"
    if p.categories and p.distinct <= rules.SLICE_MAX:
        return ", ".join(p.categories)
    return f"{p.distinct:,} distinct" if p.present else "all null"


def summary(inf: rules.Inference, origin: scaffold.Origin, written: list[str]) -> Summary:
    ds, floor = inf.dataset, inf.floor
    s = Summary(f"keel init: configs for {inf.name!r} from {origin.path}")
    s.add("rows read", scaffold.describe_rows(inf, origin))
    s.add("task", f"{ds.task.value} (target {ds.target}; {scaffold.task_reason(inf)})")
    s.add("quality floor", f"{floor.metric} >= {floor.value:g} (baseline {floor.baseline:.3g})")
    s.add("id column", ds.id_column or "none")
    s.add("timestamp column", ds.timestamp_column or "none")
    s.add("slices", ", ".join(ds.slices) or "none")
    s.add("features", f"{len(inf.features.columns)} of {len(inf.profiles)} columns")
    for note in inf.notes:
        s.add("note", note)
    for path in written:
        s.add("wrote", path)
    for i, job in enumerate(("validate", "train", "serve", "pipeline")):
        s.add("next" if i == 0 else "", f"keel {job} experiment={inf.name}")
    return s


def main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    try:
        init(parse(list(sys.argv[1:] if argv is None else argv))).show()
    except KeelError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main()


if __name__ == "__main__":
    command()

"""keel init's files: readable YAML that reads back as inferred, byte-identical on a rerun, never
written over without --force, and composed and checked by keel's own config loader; and the
job's command line."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from keel import scaffold
from keel.config import load
from keel.config.schema import (
    ColumnType,
    SourceConfig,
    SourceFormat,
    Task,
    Transform,
)
from keel.data import infer as rules
from keel.data import sources, validation
from keel.data.sources import header
from keel.errors import ConfigError, DataError
from keel.features.pipeline import FeaturePipeline

REPO = Path(__file__).resolve().parents[2]
OWN = {"penguins": "species", "tumors": "diagnosis", "rentals": "rentals"}


def infer_own(name: str, target: str) -> rules.Inference:
    """What keel init infers for tests/data/own/NAME.csv, read as text like the job reads it."""
    path = REPO / "tests" / "data" / "own" / f"{name}.csv"
    options = rules.csv_text_options(header(str(path), SourceFormat.csv), SourceConfig())
    source = SourceConfig(format=SourceFormat.csv, path=f"tests/data/own/{name}.csv")
    table = pacsv.read_csv(path, convert_options=options)
    return rules.infer(table, target=target, name=name, source=source)


def render(name: str, root: Path = Path("/project")) -> dict[Path, str]:
    inf = infer_own(name, OWN[name])
    origin = scaffold.Origin(inf.dataset.source.path, inf.rows)
    return scaffold.render(inf, origin, root / "conf")


def texts(files: dict[Path, str]) -> dict[str, str]:
    return {p.parent.name: t for p, t in files.items()}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project root holding a copy of the repository's conf/, as keel's loader's root."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.setenv("KEEL_PROJECT_ROOT", str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- YAML pieces


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("two words", "two words"),
        ("yes", "'yes'"),  # YAML 1.1 would read a boolean
        ("null", "'null'"),
        ("1", "'1'"),
        ("Flipper Length (mm)", "'Flipper Length (mm)'"),
        ("%m/%d/%Y %H:%M", "'%m/%d/%Y %H:%M'"),
        ("it's", "'it''s'"),
        ("a: b", "'a: b'"),
        (" padded", "' padded'"),
        ("cost ${x}", "'cost \\${x}'"),  # not an OmegaConf interpolation
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (3.0, "3"),
        (0.00005, "0.00005"),  # YAML 1.1 reads 5e-05 as text
        (-12.5, "-12.5"),
        (Task.regression, "regression"),
    ],
)
def test_scalar_reads_back_as_the_value(value, text):
    assert scaffold.scalar(value) == text
    if isinstance(value, str) and "${" not in value:
        assert yaml.safe_load(f"k: {text}")["k"] == value


def test_flow_entries_wrap_under_the_brace_and_read_back():
    value = {"type": "category", "allowed": [f"category_{i}" for i in range(12)]}
    lines = scaffold.entry("kind", value, comment="12 values")
    assert len(lines) > 1 and all(len(line) <= scaffold.WIDTH for line in lines)
    brace = lines[0].index("{") if "{" in lines[0] else lines[1].index("{")
    assert all(line.startswith(" " * (brace + 1)) for line in lines[2:])
    assert yaml.safe_load("\n".join(lines)) == {"kind": value}


def test_every_line_fits_and_every_file_parses():
    for name in OWN:
        for path, text in render(name).items():
            long = [line for line in text.splitlines() if len(line) > scaffold.WIDTH]
            assert not long, f"{path}: {long}"
            assert isinstance(yaml.safe_load(text), dict)


# ----------------------------------------------------------------------------- contents


def test_dataset_file_holds_what_was_inferred():
    text = texts(render("penguins"))["dataset"]
    data = yaml.safe_load(text)
    assert data["name"] == "penguins" and data["task"] == "multiclass_classification"
    assert data["columns"]["flipper_length_mm"]["source"] == "Flipper Length (mm)"
    assert data["columns"]["species"] == {
        "type": "category",
        "allowed": ["Adelie", "Chinstrap", "Gentoo"],
    }
    assert data["source"] == {"format": "csv", "path": "tests/data/own/penguins.csv"}
    assert data["split"] == {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 0}
    assert "null_values" not in data["source"]  # the defaults apply
    assert list(data["columns"]) == [p.key for p in infer_own("penguins", "species").profiles]
    assert "all 420 rows" in text


def test_user_null_values_are_written():
    inf = infer_own("rentals", "rentals")
    inf.dataset.source = SourceConfig(format=SourceFormat.csv, path="x.csv", null_values=["-"])
    text = scaffold.render_dataset(inf, scaffold.Origin("x.csv", None))
    assert yaml.safe_load(text)["source"]["null_values"] == ["-"]
    assert "the files were not counted" in text


def test_features_file_lists_features_and_says_what_is_not_one():
    text = texts(render("rentals"))["features"]
    data = yaml.safe_load(text)
    assert data["columns"]["timestamp"] == {
        "transform": "date_parts",
        "input": "timestamp",
        "parts": ["month", "dayofweek", "hour"],
        "cyclic": True,
    }
    assert "record_id" not in data["columns"] and "rentals" not in data["columns"]
    assert "#   record_id: the id" in text and "#   rentals: the target" in text


def test_experiment_file_overrides_and_serves_by_task():
    for name, post in (
        ("penguins", {"top_k": 3}),
        ("tumors", {"threshold": 0.5}),
        ("rentals", None),
    ):
        text = texts(render(name))["experiment"]
        assert text.startswith("# @package _global_\n")
        data = yaml.safe_load(text)
        assert data["defaults"] == [
            {"override /dataset": name},
            {"override /features": name},
            {"override /serve": "default"},
        ]
        served = data["serve"]["models"][name]
        assert served == (
            {"version": "production", "postprocess": post} if post else {"version": "production"}
        )
        assert "floor" in text and "baseline" in text  # how the floor was chosen


# ----------------------------------------------------------------------------- files


def test_rerun_on_the_same_file_gives_identical_bytes(tmp_path):
    first = scaffold.write(render("rentals", tmp_path))
    before = {p: p.read_bytes() for p in first}
    scaffold.write(render("rentals", tmp_path), force=True)
    assert {p: p.read_bytes() for p in first} == before
    assert render("penguins") == render("penguins")


def test_existing_files_are_not_overwritten_without_force(tmp_path):
    files = render("tumors", tmp_path)
    dataset = next(p for p in files if p.parent.name == "dataset")
    dataset.parent.mkdir(parents=True)
    dataset.write_text("# mine\n")
    with pytest.raises(ConfigError, match="--force") as info:
        scaffold.write(files)
    assert str(dataset) in str(info.value)
    assert dataset.read_text() == "# mine\n"
    assert not any(p.exists() for p in files if p != dataset)  # all or nothing
    scaffold.write(files, force=True)
    assert dataset.read_text() == files[dataset]


@pytest.mark.parametrize("name", sorted(OWN))
def test_written_files_compose_and_pass_keel_checks(project, name):
    scaffold.write(render(name, project))
    cfg = load([f"experiment={name}"])
    inf = infer_own(name, OWN[name])
    assert cfg.dataset.name == name and cfg.dataset.task == inf.dataset.task
    assert cfg.dataset.columns == inf.dataset.columns
    assert cfg.dataset.slices == inf.dataset.slices
    assert cfg.features.columns == inf.features.columns
    assert dict(cfg.slo.quality_floor) == {inf.floor.metric: inf.floor.value}
    assert cfg.serve.models == {name: inf.served}  # serve/default lists no models of its own
    assert cfg.dataset.source.path == str(project / "tests/data/own" / f"{name}.csv")


@pytest.mark.parametrize("name", sorted(OWN))
def test_every_row_of_the_file_passes_the_written_schema_and_features_fit(project, name):
    """keel's own reader (source names, null spellings, timestamp formats) and row checks
    accept the whole file under the written config, and the features fit on it."""
    shutil.copytree(REPO / "tests" / "data" / "own", project / "tests" / "data" / "own")
    scaffold.write(render(name, project))
    cfg = load([f"experiment={name}"])
    checked = validation.check_rows(sources.read_table(cfg.dataset), cfg.dataset)
    broken = [r for r in checked.column(validation.RULES_COLUMN).to_pylist() if r]
    assert broken == []
    valid = validation.only(checked, valid=True)
    pipeline = FeaturePipeline.from_config(cfg.features).fit(valid)
    matrix = pipeline.transform(valid)
    assert matrix.shape[0] == len(valid) and np.isfinite(matrix).all()


def test_every_kind_of_feature_passes_keel_checks(project):
    """A file with every column kind: bool, nullable category, hashed text, skewed numbers,
    timestamps, a free-text column, a 0/1 target."""
    n = 200
    table = pa.table(
        {
            "Order ID": [str(1000 + i) for i in range(n)],
            "placed": [f"2024-0{1 + i % 9}-{10 + i % 18}T{i % 24:02d}:00:00Z" for i in range(n)],
            "amount": [f"{(i % 17) ** 3 + 0.5}" for i in range(n)],
            "member": ["yes" if i % 3 else "no" for i in range(n)],
            "channel": [None if i % 10 == 0 else ["web", "shop", "app"][i % 3] for i in range(n)],
            "city": [f"city {i % 30}" for i in range(n)],
            "note": [f"free text {i}" for i in range(n)],
            "returned": [str(int(i % 4 == 0)) for i in range(n)],
        }
    )
    source = SourceConfig(format=SourceFormat.parquet, path="orders.parquet")
    inf = rules.infer(table, target="returned", name="orders", source=source)
    specs = inf.features.columns
    assert specs["amount"].transform == Transform.log1p
    assert specs["city"].transform == Transform.hashed
    assert specs["channel"].fill_value == "unknown"
    assert "note" not in specs and inf.dataset.id_column == "order_id"
    assert inf.dataset.columns["returned"].type == ColumnType.int
    scaffold.write(scaffold.render(inf, scaffold.Origin("orders.parquet", n), project / "conf"))
    cfg = load(["experiment=orders"])
    assert cfg.features.columns == specs
    assert cfg.dataset.columns["order_id"].source == "Order ID"
    pq.write_table(table, project / "orders.parquet")
    checked = validation.check_rows(sources.read_table(cfg.dataset), cfg.dataset)
    assert not any(checked.column(validation.RULES_COLUMN).to_pylist())
    valid = validation.only(checked, valid=True)
    assert np.isfinite(FeaturePipeline.from_config(cfg.features).fit(valid).transform(valid)).all()


# ----------------------------------------------------------------------------- the job


def job():
    return importlib.import_module("keel.cli.init")


@pytest.mark.parametrize(
    "argv", [[], ["data.csv"], ["--target", "y"], ["a.csv", "b.csv", "--target", "y"]]
)
def test_job_without_file_or_target_prints_usage_and_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        job().parse(argv)
    assert info.value.code == 2
    assert "usage: keel init FILE --target COLUMN" in capsys.readouterr().out


def test_job_flags():
    req = job().parse(
        ["data/My Sales.csv", "--target", "y", "--task", "binary", "--null-values", "-, ?"]
    )
    assert (req.path, req.target, req.name) == ("data/My Sales.csv", "y", "my_sales")
    assert (req.task, req.null_values, req.force, req.sample) == (
        Task.binary_classification,
        ["-", "?"],
        False,
        20_000,
    )
    req = job().parse(["x.parquet", "--target=y", "--name", "mine", "--force", "--sample=5"])
    assert (req.name, req.force, req.sample, req.null_values) == ("mine", True, 5, None)
    with pytest.raises(ConfigError, match="--name"):
        job().parse(["x.csv", "--target", "y", "--name", "a b"])


def test_job_writes_local_paths_relative_to_the_project(project):
    init = job()
    (project / "data").mkdir()
    assert init.source_path(str(project / "data" / "x.csv")) == "data/x.csv"
    assert init.source_path("s3://bucket/x.csv") == "s3://bucket/x.csv"
    assert init.source_path("/elsewhere/x.csv") == "/elsewhere/x.csv"


def test_job_format_from_suffix_or_the_directory(tmp_path):
    init = job()
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    assert init.source_format(str(tmp_path / "x.jsonl")) == SourceFormat.json
    assert init.source_format(str(tmp_path / "x.jsonl"), SourceFormat.csv) == SourceFormat.csv
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.parquet").write_bytes(b"PAR1")
    assert init.source_format(str(tmp_path / "parts")) == SourceFormat.parquet
    (tmp_path / "parts" / "b.csv").write_text("x\n1\n")
    with pytest.raises(DataError, match="several formats"):
        init.source_format(str(tmp_path / "parts"))
    with pytest.raises(DataError, match="no such file"):
        init.source_format(str(tmp_path / "missing"))
    (tmp_path / "x.txt").write_text("x\n")
    with pytest.raises(DataError, match="--format"):
        init.source_format(str(tmp_path / "x.txt"))


def sample(path: Path, fmt: SourceFormat, rows: int) -> tuple[pa.Table, int | None]:
    return job().read_sample(str(path), SourceConfig(format=fmt, path=str(path)), rows)


def test_the_sample_is_the_first_rows_in_file_order_as_text(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,score,when\n" + "".join(f"{i},{i / 2},2026-01-0{i}\n" for i in range(1, 6)))
    table, total = sample(path, SourceFormat.csv, 3)
    assert table.column("id").to_pylist() == ["1", "2", "3"] and total is None  # not counted
    assert {f.type for f in table.schema} == {pa.string()}  # typed by keel's rules, not Arrow
    table, total = sample(path, SourceFormat.csv, 10)
    assert len(table) == total == 5


def test_a_sample_stops_reading_once_it_has_its_rows(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "1.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(100)))
    (parts / "2.csv").write_text("a\n1,2,3\n")  # ragged: never read for a smaller sample
    table, total = sample(parts, SourceFormat.csv, 25)
    assert table.column("a").to_pylist() == [str(i) for i in range(25)] and total is None
    with pytest.raises(DataError, match=r"parts: cannot read as csv"):
        sample(parts, SourceFormat.csv, 101)  # needs the second file: names the path
    (parts / "2.csv").unlink()
    pq.write_table(pa.table({"a": list(range(100))}), parts / "1.parquet", row_group_size=10)
    (parts / "2.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    (parts / "1.csv").unlink()
    # the row count reads every file's footer: a broken file is a clear error, not a traceback
    with pytest.raises(DataError, match=r"parts: cannot read as parquet"):
        sample(parts, SourceFormat.parquet, 25)


def test_files_of_one_dataset_with_other_inferred_types_make_one_sample(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), parts / "1.parquet")
    pq.write_table(pa.table({"a": [2.5, 3.5, 4.5]}), parts / "2.parquet")
    table, total = sample(parts, SourceFormat.parquet, 4)
    assert table.column("a").to_pylist() == [1, 2, 2.5, 3.5] and total == 5  # metadata count
    lines = tmp_path / "x.jsonl"
    lines.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": null}\n{"a": 3.5, "b": "é"}\n')
    table, total = sample(lines, SourceFormat.json, 10)
    assert table.to_pylist()[2] == {"a": 3.5, "b": "é"} and total == 3


def test_init_writes_its_files_without_importing_ray(project):
    # in a process of its own: a test process may hold a Ray that other tests started
    path = REPO / "tests" / "data" / "own" / "penguins.csv"
    script = (
        "import sys; from keel.cli.init import Request, init; "
        f"init(Request({str(path)!r}, 'species', 'penguins', None, 20_000, None, None, False)); "
        "print('ray' in sys.modules)"
    )
    done = subprocess.run(  # KEEL_PROJECT_ROOT: the project fixture's
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split()[-1] == "False", done.stdout + done.stderr
    cfg = load(["experiment=penguins"])  # what was written composes
    assert cfg.dataset.source.path == str(path) and len(cfg.dataset.columns) == 8

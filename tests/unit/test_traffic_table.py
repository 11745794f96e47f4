"""keel.traffic.traffic_table: what `keel simulate` sends, generated or replayed from files."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from keel.config import load
from keel.data import synthetic
from keel.data.sources import read_table
from keel.data.split import keep
from keel.data.validation import RULES_COLUMN, check_rows, only
from keel.errors import ConfigError, DataError
from keel.traffic import traffic_table

ID = "customer_id"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, str]:
    """Churn rows written as the dataset's CSV file (invalid rows included), and a second file
    of fresh rows for simulate.path."""
    root = tmp_path_factory.mktemp("churn")
    base = load([]).dataset
    paths = []
    for name, seed, invalid in (("churn.csv", 7, 0.05), ("fresh.csv", 99, 0.0)):
        source = dataclasses.replace(base.source, rows=1500, seed=seed, invalid_fraction=invalid)
        table = synthetic.generate(dataclasses.replace(base, source=source))
        pacsv.write_csv(table, root / name)
        paths.append(str(root / name))
    return paths[0], paths[1]


def config(files, *overrides: str):
    return load(["dataset.source.format=csv", f"dataset.source.path={files[0]}", *overrides])


def valid_rows(cfg, path: str) -> pa.Table:
    return only(check_rows(read_table(cfg.dataset, path), cfg.dataset), valid=True)


def ids(table: pa.Table) -> list[str]:
    return table.column(ID).to_pylist()


def test_replay_sends_only_rows_of_the_test_split(files):
    cfg = config(files, "simulate.rows=100")
    table = traffic_table(cfg)
    test = set(ids(keep(valid_rows(cfg, files[0]), cfg.dataset, "test")))
    assert len(table) == 100 and set(ids(table)) <= test
    assert len(set(ids(table))) == 100  # enough test rows: no row twice


def test_replayed_rows_are_valid_and_typed_as_declared(files):
    cfg = config(files, "simulate.rows=200")
    table = traffic_table(cfg)
    assert table.column_names == list(cfg.dataset.columns)
    assert table.schema.field("signup_ts").type == pa.timestamp("us")
    assert set(check_rows(table, cfg.dataset).column(RULES_COLUMN).to_pylist()) == {""}


def test_replay_is_deterministic_by_seed(files):
    one = traffic_table(config(files, "simulate.rows=50", "simulate.seed=1"))
    assert one.equals(traffic_table(config(files, "simulate.rows=50", "simulate.seed=1")))
    assert not one.equals(traffic_table(config(files, "simulate.rows=50", "simulate.seed=2")))


def test_replay_draws_with_replacement_when_the_source_is_short(files):
    cfg = config(files, "simulate.rows=1000")
    table = traffic_table(cfg)
    test = set(ids(keep(valid_rows(cfg, files[0]), cfg.dataset, "test")))
    assert len(table) == 1000 and len(test) < 1000
    assert set(ids(table)) <= test and len(set(ids(table))) > 0.8 * len(test)


def test_a_second_file_is_replayed_whole(files):
    cfg = config(files, "simulate.rows=1500", f"simulate.path={files[1]}")
    table = traffic_table(cfg)
    fresh = set(ids(valid_rows(cfg, files[1])))
    assert set(ids(table)) <= fresh and len(set(ids(table))) > 0.5 * len(fresh)  # not a split


def test_a_bad_simulate_path_is_a_clear_error(files, tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file or directory \(simulate\.path\)"):
        traffic_table(config(files, f"simulate.path={tmp_path / 'nope.csv'}"))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"other\.csv: missing column\(s\) 'customer_id'"):
        traffic_table(config(files, f"simulate.path={tmp_path / 'other.csv'}"))


def test_drift_knobs_apply_to_replayed_rows(files):
    plain = traffic_table(config(files, "simulate.rows=300"))
    knobs = ("dataset.source.drift.concept=1", "+dataset.source.drift.covariate={age: 1.0}")
    drifted = traffic_table(config(files, "simulate.rows=300", *knobs))
    assert ids(drifted) == ids(plain)  # the same rows, shifted
    flipped = zip(plain["churned"].to_pylist(), drifted["churned"].to_pylist(), strict=True)
    assert all(a == 1 - b for a, b in flipped)
    assert pc.mean(drifted["age"]).as_py() > pc.mean(plain["age"]).as_py() + 5
    assert pc.max(drifted["age"]).as_py() <= 100  # the declared max: still served


def test_planting_invalid_rows_needs_a_synthetic_dataset(files):
    with pytest.raises(ConfigError, match=r"simulate\.invalid_fraction: planted invalid rows"):
        traffic_table(config(files, "simulate.invalid_fraction=0.1"))


def test_replay_starts_no_ray(files, monkeypatch):
    """A client process replays rows without Ray (the suite's shared Ray may already run in
    this process, so the test refuses any Ray Data read instead of asking Ray)."""
    import ray.data

    def refuse(*_, **__):
        raise AssertionError("traffic_table used Ray Data")

    for reader in ("read_csv", "read_parquet", "read_json"):
        monkeypatch.setattr(ray.data, reader, refuse)
    assert traffic_table(config(files, "simulate.rows=10")).num_rows == 10


def test_synthetic_traffic_is_still_generated():
    cfg = load(["simulate.rows=300", "simulate.seed=4"])
    source = dataclasses.replace(cfg.dataset.source, rows=300, seed=4, invalid_fraction=0.0)
    expected = synthetic.generate(dataclasses.replace(cfg.dataset, source=source))
    assert traffic_table(cfg).equals(expected)
    with pytest.raises(ConfigError, match=r"simulate\.path: dataset 'churn' is synthetic"):
        traffic_table(load(["simulate.path=/tmp/x.csv"]))

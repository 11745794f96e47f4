"""Retraining's pure helpers: the hashed holdout, the combined training rows, the relaxed id
column, the challenger's config, the target's encoding and the trigger. No Ray, no training."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest
import yaml

from keel import storage
from keel.config import load, to_dict, to_yaml
from keel.config.schema import Task
from keel.monitoring.monitor import VERDICT
from keel.monitoring.retrain import (
    _challenger_config,
    _combined,
    _encoded_target,
    _holdout,
    _retrain_columns,
    _trigger,
    _window,
)
from keel.targets import decode


@pytest.fixture(scope="module")
def churn_cfg():
    return load([])


def ids(n: int, prefix: str = "req") -> pa.ChunkedArray:
    return pa.chunked_array([[f"{prefix}-{i:06d}" for i in range(n)]])


# ----------------------------------------------------------------------------- holdout


def test_holdout_is_deterministic_for_the_same_ids_and_seed():
    a = _holdout(ids(2_000), 0.3, seed=7)
    b = _holdout(ids(2_000), 0.3, seed=7)
    assert a.type == pa.bool_()
    assert a.to_pylist() == b.to_pylist()


def test_holdout_holds_out_about_its_share():
    for share in (0.1, 0.3, 0.5):
        held = np.asarray(_holdout(ids(10_000), share, seed=0).to_pylist())
        assert abs(held.mean() - share) < 0.02  # 4 standard deviations at n = 10,000


def test_holdout_of_an_id_depends_on_the_id_alone():
    all_ids = ids(1_000)
    mask = dict(zip(all_ids.to_pylist(), _holdout(all_ids, 0.3, 1).to_pylist(), strict=True))
    order = np.random.default_rng(0).permutation(1_000)[:400]
    some = pa.chunked_array([[all_ids[int(i)].as_py() for i in order]])
    shuffled = _holdout(some, 0.3, 1).to_pylist()
    assert shuffled == [mask[r] for r in some.to_pylist()]


def test_holdout_changes_with_the_seed():
    a = np.asarray(_holdout(ids(2_000), 0.3, seed=0).to_pylist())
    b = np.asarray(_holdout(ids(2_000), 0.3, seed=1).to_pylist())
    assert abs(a.mean() - 0.3) < 0.03 and abs(b.mean() - 0.3) < 0.03
    # the seed's salt is XORed onto the id's hash: splits differ, though not independently
    # (seeds 0 and 1 disagree on about 10% of ids, independent splits would on 42%)
    assert np.mean(a != b) > 0.05


def test_holdout_of_share_one_is_everything():
    assert all(_holdout(ids(500), 1.0, seed=3).to_pylist())


# ----------------------------------------------------------------------------- combined


def original_table(ts_type: pa.DataType) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array(["C00000001", "C00000002"]),
            "signup_ts": pa.array(
                [datetime(2023, 1, 1), datetime(2023, 6, 1)], pa.timestamp("us")
            ).cast(ts_type),
            "age": pa.array([30, 40], pa.int32()),
            "total_charges": pa.array([10.5, None], pa.float64()),
            "region": pa.array(["north", "south"]),
            "churned": pa.array([0, 1], pa.int64()),
        }
    )


def recent_table() -> pa.Table:
    """Columns as _recent_labeled builds them: inputs as logged (a timestamp as the ISO text
    the request carried), the target decoded; no id, and total_charges never sent."""
    return pa.table(
        {
            "region": ["east", "west", "north"],
            "signup_ts": ["2024-01-01T10:00:00+02:00", "2024-02-03T04:05:06Z", "not a time"],
            "age": pa.array([25, 35, 45], pa.int64()),
            "churned": pa.array([1, 0, 1], pa.int64()),
            "extra": ["dropped", "dropped", "dropped"],
        }
    )


@pytest.mark.parametrize("ts_type", [pa.timestamp("us"), pa.timestamp("us", tz="UTC")])
def test_combined_is_original_then_each_recent_row_weight_times(ts_type):
    original = original_table(ts_type)
    rows = _combined(original, recent_table(), weight=2)
    assert rows.schema == original.schema  # no extra column, the original's types
    assert rows.num_rows == 2 + 3 * 2
    assert rows.slice(0, 2).equals(original)
    assert rows["region"].to_pylist() == ["north", "south", *["east", "west", "north"] * 2]
    assert rows["churned"].to_pylist() == [0, 1, *[1, 0, 1] * 2]
    assert rows["age"].to_pylist() == [30, 40, *[25, 35, 45] * 2]


@pytest.mark.parametrize("ts_type", [pa.timestamp("us"), pa.timestamp("us", tz="UTC")])
def test_combined_parses_iso_text_into_the_original_timestamp_type(ts_type):
    rows = _combined(original_table(ts_type), recent_table(), weight=1)
    assert rows.schema.field("signup_ts").type == ts_type
    utc = [None if t is None else t.replace(tzinfo=None) for t in rows["signup_ts"].to_pylist()[2:]]
    assert utc == [datetime(2024, 1, 1, 8, 0), datetime(2024, 2, 3, 4, 5, 6), None]


def test_combined_fills_columns_missing_from_recent_with_nulls():
    rows = _combined(original_table(pa.timestamp("us")), recent_table(), weight=3)
    assert rows["customer_id"].to_pylist()[2:] == [None] * 9
    assert rows["total_charges"].to_pylist() == [10.5, None, *[None] * 9]
    assert rows.schema.field("total_charges").type == pa.float64()


def test_combined_with_weight_one_and_no_recent_rows():
    original = original_table(pa.timestamp("us"))
    assert _combined(original, recent_table(), 1).num_rows == 5
    assert _combined(original, recent_table().slice(0, 0), 4).equals(original)


# ----------------------------------------------------------------------------- repeatable ids


def test_retrain_columns_relax_only_the_id_column(churn_cfg):
    ds = churn_cfg.dataset
    assert ds.columns["customer_id"].unique is True  # what the relaxation is for
    columns = _retrain_columns(ds)
    spec = columns["customer_id"]
    assert (spec.unique, spec.nullable) == (False, True)
    assert spec.regex == ds.columns["customer_id"].regex  # the rest of the spec stays
    assert list(columns) == list(ds.columns)
    assert {c: s for c, s in columns.items() if c != "customer_id"} == {
        c: s for c, s in ds.columns.items() if c != "customer_id"
    }
    assert ds.columns["customer_id"].unique is True  # the config itself is not changed


def test_retrain_columns_without_an_id_column_change_nothing(churn_cfg):
    ds = dataclasses.replace(churn_cfg.dataset, id_column=None)
    assert _retrain_columns(ds) == ds.columns


def test_retrain_columns_are_read_under_their_keys(churn_cfg):
    """The retraining file is written under the keys: a `source:` file name no longer applies."""
    ds = churn_cfg.dataset
    renamed = {**ds.columns, "age": dataclasses.replace(ds.columns["age"], source="Age (years)")}
    columns = _retrain_columns(dataclasses.replace(ds, columns=renamed))
    assert columns["age"].source is None
    assert columns["age"].min == ds.columns["age"].min


# ----------------------------------------------------------------------------- challenger config


@pytest.fixture(scope="module")
def champion() -> dict:
    """A champion trained differently from the defaults, as a plain dict."""
    cfg = load(
        [
            "train.epochs=7",
            "train.lr=0.02",
            "model.hidden_sizes=[8,4]",
            "dataset.source.rows=1234",
            "slo.max_error_rate=0.5",
        ]
    )
    return to_dict(cfg)


def test_champion_trained_groups_win_over_the_run_config(champion):
    run_cfg = load(["train.epochs=3", "model.hidden_sizes=[64]", "slo.max_error_rate=0.02"])
    cfg = _challenger_config(run_cfg, champion, [])
    assert cfg.train.epochs == 7
    assert cfg.train.lr == 0.02
    assert cfg.model.hidden_sizes == [8, 4]
    assert cfg.dataset.source.rows == 1234
    assert cfg.slo.max_error_rate == 0.02  # not a trained group: this run's value


def test_command_line_overrides_of_trained_groups_win_over_the_champion(champion):
    overrides = ["train.lr=0.005", "++model.hidden_sizes=[16]", "slo.max_error_rate=0.2"]
    cfg = _challenger_config(load(overrides), champion, overrides)
    assert cfg.train.lr == 0.005
    assert cfg.model.hidden_sizes == [16]
    assert cfg.train.epochs == 7  # not overridden: the champion's
    assert cfg.slo.max_error_rate == 0.2  # this run's config


def test_group_selections_are_not_key_overrides(champion):
    overrides = ["experiment=churn", "model=mlp", "--force"]
    cfg = _challenger_config(load(overrides[:2]), champion, overrides)
    assert cfg.model.hidden_sizes == [8, 4]


def test_champion_read_from_its_stored_yaml():
    stored = yaml.safe_load(to_yaml(load(["train.epochs=5"])))
    cfg = _challenger_config(load([]), stored, ["train.batch_size=64"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (5, 64)


# ----------------------------------------------------------------------------- target


@pytest.mark.parametrize("classes", [[0, 1], ["stays", "churns"], [False, True]])
def test_classification_target_round_trip(classes):
    y = np.array([1.0, 0.0, 1.0, 1.0])
    decoded = decode(y, Task.binary_classification, classes)
    assert decoded == [classes[1], classes[0], classes[1], classes[1]]
    encoded = _encoded_target(
        pa.chunked_array([pa.array(decoded)]), Task.binary_classification, classes
    )
    assert encoded.dtype == np.int64
    assert encoded.tolist() == [1, 0, 1, 1]


def test_multiclass_target_round_trip():
    classes = ["basic", "plus", "premium"]
    y = np.array([2.0, 0.0, 1.0])
    decoded = decode(y, Task.multiclass_classification, classes)
    assert decoded == ["premium", "basic", "plus"]
    encoded = _encoded_target(pa.chunked_array([decoded]), Task.multiclass_classification, classes)
    assert encoded.tolist() == [2, 0, 1]


def test_regression_target_round_trip():
    y = np.array([1250.5, 900.0, 0.25])
    decoded = decode(y, Task.regression, [])
    assert decoded == [1250.5, 900.0, 0.25]
    encoded = _encoded_target(pa.chunked_array([decoded]), Task.regression, [])
    assert encoded.dtype == np.float64
    np.testing.assert_array_equal(encoded, y)


# ----------------------------------------------------------------------------- trigger


def write_verdict(cfg, run: str, verdict: dict) -> str:
    """A verdict.json of the whole shape monitor writes, with the keys given."""
    whole = {
        "model": cfg.dataset.name,
        "version": 1,
        "window": {"start": "2024-05-01T00:00:00+00:00", "end": "2024-05-01T01:00:00+00:00"},
        "rows": 100,
        "reference_rows": 100,
        "files": {},
        "status": "fail",
        "failed": [],
        "retrain": False,
        "reasons": [],
        "checks": {},
    }
    path = storage.join(cfg.paths.reports, cfg.dataset.name, "monitor", run, VERDICT)
    storage.write_json(path, whole | verdict)
    return path


def test_trigger_without_a_verdict(make_cfg):
    cfg = make_cfg()
    t = _trigger(cfg, "churn", force=False)
    assert (t.run, t.verdict) == (False, None)
    assert "keel monitor" in t.why and "--force" in t.why
    assert _trigger(cfg, "churn", force=True).run is True


def test_trigger_follows_the_latest_verdict(make_cfg):
    cfg = make_cfg()
    write_verdict(cfg, "20240501-000000-000", {"retrain": True, "reasons": ["old: x"]})
    window = {"start": "2024-05-02T00:00:00+00:00", "end": "2024-05-02T01:00:00+00:00"}
    path = write_verdict(
        cfg,
        "20240502-000000-000",
        {"retrain": True, "reasons": ["drift: a", "slo: b"], "window": window},
    )
    t = _trigger(cfg, "churn", force=False)
    assert t.to_json() == {
        "verdict": path,
        "window": window,
        "run": True,
        "why": "drift: a; slo: b",
    }
    # retraining learns from the failing verdict's window on (monitor.retrain.window unset)
    since = _window(cfg, t)
    assert since.start.isoformat() == window["start"] and since.end > since.start


def test_trigger_kept_when_the_verdict_does_not_ask_unless_forced(make_cfg):
    cfg = make_cfg()
    write_verdict(cfg, "20240502-000000-000", {"retrain": False, "reasons": ["slo: b"]})
    t = _trigger(cfg, "churn", force=False)
    assert t.run is False
    assert "does not ask" in t.why and "--force" in t.why
    forced = _trigger(cfg, "churn", force=True)
    assert (forced.run, forced.why) == (True, "forced (--force)")

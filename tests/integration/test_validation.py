"""Validation on Ray Data: counts match what the generator planted; nothing is lost."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from keel.data import synthetic
from keel.data.validation import RULES_COLUMN, validate_source
from keel.errors import ValidationFailed
from keel.storage import read_json


@pytest.mark.parametrize("experiment", ["churn", "listings"])
def test_counts_match_planted_rows(make_cfg, experiment):
    cfg = make_cfg(
        f"experiment={experiment}", "dataset.source.rows=6000", "dataset.source.chunk_rows=2500"
    )
    result = validate_source(cfg.dataset, cfg.paths.reports)
    report = result.report
    planted = synthetic.planted(cfg.dataset)
    assert report.counts() == planted
    assert report.rows == 6000
    assert report.passed

    table = synthetic.generate(cfg.dataset)
    quarantined = pq.read_table(report.quarantine_path)
    n_valid = result.valid.count()
    assert n_valid + quarantined.num_rows == table.num_rows  # nothing dropped silently
    assert report.invalid_rows == quarantined.num_rows > 0
    assert all(quarantined.column(RULES_COLUMN).to_pylist())

    schema = result.valid.schema()
    assert RULES_COLUMN not in schema.names
    assert list(schema.names) == list(cfg.dataset.columns)

    saved = read_json(report.report_path)
    assert saved["invalid_rows"] == report.invalid_rows
    by_rule = {f"{r['column']}:{r['rule']}": r for r in saved["rules"]}
    assert {k: r["rows"] for k, r in by_rule.items()} == planted
    some = next(iter(by_rule.values()))
    assert 0 < len(some["examples"]) <= cfg.dataset.validation.examples


def test_policy_fails_above_the_invalid_fraction_but_keeps_everything(make_cfg):
    cfg = make_cfg("dataset.source.rows=3000", "dataset.source.invalid_fraction=0.2")
    with pytest.raises(ValidationFailed) as err:
        validate_source(cfg.dataset, cfg.paths.reports)
    msg = str(err.value)
    assert "dataset.validation.max_invalid_fraction=0.05" in msg
    assert "report.json" in msg
    run = _one_run(cfg) / "report.json"
    saved = read_json(str(run))
    assert not saved["passed"]
    quarantined = pq.read_table(str(run.parent / "quarantine")).num_rows
    assert saved["invalid_rows"] == quarantined >= 600  # 20% planted; a duplicate id flags 2 rows


def _one_run(cfg):
    from pathlib import Path

    runs = list((Path(cfg.paths.reports) / cfg.dataset.name / "validation").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_fail_policy_rejects_any_invalid_row(make_cfg):
    cfg = make_cfg("dataset.source.rows=2000", "dataset.validation.on_invalid=fail")
    with pytest.raises(ValidationFailed, match="on_invalid=fail"):
        validate_source(cfg.dataset, cfg.paths.reports)


def test_clean_data_passes_with_no_quarantine(make_cfg):
    cfg = make_cfg("dataset.source.rows=2000", "dataset.source.invalid_fraction=0")
    report = validate_source(cfg.dataset, cfg.paths.reports).report
    assert report.invalid_rows == 0 and report.rules == [] and report.quarantine_path == ""

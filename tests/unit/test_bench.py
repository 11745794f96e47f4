"""The features benchmark compares like with like: its scikit-learn baseline computes keel's matrix.

Local fits only (no Ray), a few thousand rows, so this runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from benchmarks.common import bench_dataset
from benchmarks.features import approximate, baseline, check, failures
from keel.config.schema import DatePart, FeatureSpec, GroupStat, Impute, Scale, Transform
from keel.data import synthetic
from keel.features import FeaturePipeline

T = Transform
ROWS = 5_000


def agree(specs: dict[str, FeatureSpec], table: pa.Table, at: pa.Table | None = None) -> list:
    agreement = check(FeaturePipeline(specs).fit(table), table, at)
    assert not failures(agreement), failures(agreement)
    return agreement


@pytest.mark.parametrize("experiment", ["churn", "listings"])
def test_baseline_computes_the_declared_features(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "bench=features", f"bench.rows={ROWS}")
    table = synthetic.generate(bench_dataset(cfg))
    agreement = agree(cfg.features.columns, table)
    assert len(agreement) == len(FeaturePipeline(cfg.features.columns).fit(table).output_columns)
    assert any(a.exact for a in agreement)


def test_the_timed_baseline_computes_the_matrix_the_check_compares(make_cfg):
    """The timed side calls fit_transform over two processes; the check compares keel with fit
    then transform: both must give one matrix, or the timing is of other work."""
    cfg = make_cfg("experiment=churn", "bench=features", "bench.rows=2000")
    rows = synthetic.generate(bench_dataset(cfg)).to_pandas()
    timed = baseline(cfg.features.columns, n_jobs=2).fit_transform(rows)
    checked = baseline(cfg.features.columns).fit(rows).transform(rows)
    assert timed.shape == checked.shape and timed.shape[0] == 2000
    np.testing.assert_array_equal(timed, checked)


def frame(rng: np.random.Generator, n: int, groups: list[str]) -> pd.DataFrame:
    """Every kind of input, with missing values, zeros to divide by and ties to break."""
    x = rng.normal(2.0, 3.0, n)
    x[rng.random(n) < 0.05] = np.nan
    cats = np.array(list("abcdefgh"), dtype=object)[rng.zipf(1.6, n) % 8]
    cats[rng.random(n) < 0.05] = None
    group = np.array(groups, dtype=object)[rng.integers(len(groups), size=n)]
    group[rng.random(n) < 0.02] = None
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400 * 86400, n), "s")
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.integers(0, 6, n).astype(float),  # 0 -> ratio is NaN -> filled
            "c": cats,
            "g": group,
            "ts": ts.where(rng.random(n) > 0.03),
            "b": rng.random(n) < 0.3,
        }
    )


S = Scale
EVERY = {
    "identity": FeatureSpec(transform=T.identity, input="x"),
    "bool": FeatureSpec(transform=T.identity, input="b"),
    "standardize": FeatureSpec(transform=T.standardize, input="x", impute=Impute.mean),
    "minmax": FeatureSpec(transform=T.minmax, input="y"),
    "log1p": FeatureSpec(transform=T.log1p, input="x", impute=Impute.median, scale=S.standardize),
    "clip": FeatureSpec(transform=T.clip, input="x", lower=-1, upper=4, scale=S.minmax),
    "upper": FeatureSpec(transform=T.clip, input="x", upper=3),
    "qclip": FeatureSpec(transform=T.clip, input="x", lower_quantile=0.05, upper_quantile=0.9),
    "bucket": FeatureSpec(transform=T.bucketize, input="x", boundaries=[0, 2, 5]),
    "qbucket": FeatureSpec(transform=T.bucketize, input="x", bins=4),
    "one_hot": FeatureSpec(transform=T.one_hot, input="c", max_categories=3),
    "one_hot_rare": FeatureSpec(transform=T.one_hot, input="c", min_frequency=200),
    "one_hot_fill": FeatureSpec(transform=T.one_hot, input="c", impute=Impute.most_frequent),
    "ordinal": FeatureSpec(transform=T.ordinal, input="c", categories=["c", "b", "a"]),
    "ordinal_fit": FeatureSpec(transform=T.ordinal, input="c", scale=S.minmax),
    "hashed": FeatureSpec(transform=T.hashed, input="c", buckets=8),
    "hashed_fill": FeatureSpec(
        transform=T.hashed, input="c", buckets=5, impute=Impute.constant, fill_value="zz"
    ),
    "dates": FeatureSpec(transform=T.date_parts, input="ts", parts=list(DatePart)),
    "cycles": FeatureSpec(transform=T.date_parts, input="ts", parts=list(DatePart), cyclic=True),
    "ratio": FeatureSpec(
        transform=T.ratio, inputs=["x", "y"], impute=Impute.constant, fill_value=1
    ),
    "difference": FeatureSpec(transform=T.difference, inputs=["x", "y"], scale=S.standardize),
    **{
        f"group_{stat.value}": FeatureSpec(
            transform=T.group_stat, input="x", by="g", stat=stat, scale=S.standardize
        )
        for stat in GroupStat
    },
}


def test_every_transform_agrees_on_missing_and_unseen_values():
    rng = np.random.default_rng(0)
    train = pa.Table.from_pandas(frame(rng, ROWS, ["u", "v", "w"]), preserve_index=False)
    unseen = frame(rng, ROWS // 5, ["u", "zz"])  # a group never seen in training
    unseen.loc[::7, "c"] = "never-seen"
    agreement = agree(EVERY, train, pa.Table.from_pandas(unseen, preserve_index=False))
    approx = {f for f, spec in EVERY.items() if approximate(spec)}
    assert approx == {"log1p", "qclip", "qbucket"}
    assert all(a.exact for a in agreement if not a.column.startswith(tuple(approx)))


def test_monitor_bench_logs_what_serving_logs(make_cfg, tmp_path):
    """bench=monitor writes its million log rows column-wise: they must be the file ParquetLog
    writes for the same requests (same schema, same values)."""
    import pyarrow.parquet as pq

    from benchmarks.monitor import log_table
    from keel import prediction_log as plog
    from keel import storage
    from keel.serving.spool import ParquetLog

    cfg = make_cfg("experiment=churn", "bench=monitor", "bench.rows=300")
    ds = bench_dataset(cfg)
    rows = synthetic.generate_chunk(ds, 0)
    schema = plog.prediction_schema({c: s for c, s in ds.columns.items() if c != ds.target})
    fixed = {"model": ds.name, "version": 3, "variant": "primary"}
    score = np.random.default_rng(0).random(rows.num_rows)
    outputs = [{"label": int(p > 0.5)} for p in score]
    table = log_table(rows, schema, fixed, score, outputs)
    inputs = rows.drop_columns([ds.target]).to_pylist()
    for row, ts in zip(inputs, table["signup_ts"].to_pylist(), strict=True):
        row["signup_ts"] = ts  # as log_table renders it (clients send their own text; unmonitored)
    own = table.select(["request_id", "ts", "latency_ms", "prediction", "output"]).to_pylist()
    log = ParquetLog(str(tmp_path / "logs"), schema, 10**9, 10**9, str(tmp_path / "spool"))
    log.append([plog.prediction_row({**fixed, **o}, r) for o, r in zip(own, inputs, strict=True)])
    written = pq.read_table(log.flush()[0])
    assert pq.read_table(pa.BufferReader(storage.parquet_bytes(table))).equals(written)

"""The features benchmark: keel's FeaturePipeline on Ray Data vs pandas + scikit-learn.

Both sides start from the same cached parquet files. The baseline is the ColumnTransformer a user
would write by hand, but built generically from the declared FeatureSpecs by `baseline()`, one
pipeline per feature: impute -> transform -> fill non-finite with the fitted mean -> scale.
Before anything is timed, `check()` proves the two sides compute the same matrix.

What is timed: keel's "fit" includes reading the files once into Ray's object store (as
`keel train` materializes its splits before fitting; until 2026-12-06 each pass streamed the
files again, which a keel job does not do), then the fit pass; "transform" is the pass that
builds the matrix. The baseline reads once into pandas ("read") and then calls `fit_transform`
in memory with `n_jobs` = the CPUs Ray has, the cores keel's tasks use; "total" is everything
from files to feature matrix on both sides. Ray's start-up and
worker warm-up are excluded from keel's side and reported apart. Params: `check_rows` (sample
size of the check, default 20,000). Ray Data read settings come from `ray.data_context`
(conf/ray/) and are recorded in the report.

What cannot match exactly, and why:
- median imputation, quantile clip and quantile bins: keel fits quantiles from a weighted sample
  (`steps.SAMPLE` values per batch) so fitting stays one mergeable pass; the baseline uses exact
  quantiles (the same inverted-CDF definition; SimpleImputer's median interpolates). These
  features, and the fill and scale statistics fitted after them, agree within APPROX.
- one_hot uses keel's vocabulary rule (the `max_categories` most frequent, ties by name, plus an
  always-present `__other__` column for the rest, unseen and missing values), encoded with
  sklearn's OneHotEncoder. OneHotEncoder(max_categories=k, handle_unknown="infrequent_if_exist")
  alone differs: k counts the infrequent column, that column is absent when nothing is
  infrequent (different shape), missing values become their own category, and ties between
  equal counts go the other way.
- hashed uses pandas' hash_array like keel (sklearn's FeatureHasher uses MurmurHash3, so its
  buckets would differ); numeric inputs most_frequent-imputed break count ties by number
  (sklearn) rather than by text (keel).
Everything else agrees to float32 rounding (EXACT).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from keel.app import Summary
from keel.config import KeelConfig
from keel.config.schema import FeatureSpec, Impute, Scale, Transform
from keel.errors import KeelError
from keel.features import FeaturePipeline
from keel.features.steps import CYCLES, part_names
from keel.storage import resolve

from . import common

log = logging.getLogger(__name__)

T = Transform
CATEGORICAL = (T.one_hot, T.ordinal, T.hashed)  # transforms of a category column
OTHER = "__other__"  # keel's name for the one_hot column of everything not kept
EXACT = 1e-5  # |keel - baseline| <= EXACT * (1 + |baseline|): float32 rounding
# Quantile-fitted features: mean |keel - baseline| <= APPROX * std(baseline), about what a
# quantile off by 1-2% of ranks does (moves that share of rows one bucket, or a clip bound).
APPROX = 0.05
CHECK_ROWS = 20_000


# ----------------------------------------------------------------------------- the baseline


def baseline(specs: dict[str, FeatureSpec], n_jobs: int | None = None) -> ColumnTransformer:
    """A scikit-learn ColumnTransformer computing the declared features, in keel's column names;
    `n_jobs` fits and transforms its features in that many processes."""
    return ColumnTransformer(
        [(name, _pipeline(spec), _columns(spec)) for name, spec in specs.items()],
        sparse_threshold=0.0,
        verbose_feature_names_out=_feature_name,
        n_jobs=n_jobs,
    )


def _feature_name(feature: str, suffix: str) -> str:
    return feature + suffix


def _columns(spec: FeatureSpec) -> list[str]:
    names = list(spec.inputs) if spec.inputs else [spec.input]
    return [*names, spec.by] if spec.transform == T.group_stat else names


def _pipeline(spec: FeatureSpec):
    t = spec.transform
    steps: list[Any] = [_missing_as_nan()] if t in CATEGORICAL else []
    if spec.impute != Impute.none and t == T.group_stat:  # impute the value, not the group
        steps.append(ColumnTransformer([("v", _imputer(spec), [0])], remainder="passthrough"))
    elif spec.impute != Impute.none:
        steps.append(_imputer(spec))
    steps += _transform(spec)
    if t not in (T.one_hot, T.hashed, T.bucketize):  # numeric outputs: fill, then scale
        steps += [_nan_non_finite(), SimpleImputer(strategy="mean", keep_empty_features=True)]
        scale = {T.standardize: Scale.standardize, T.minmax: Scale.minmax}.get(t, spec.scale)
        if scale != Scale.none:
            steps.append(StandardScaler() if scale == Scale.standardize else MinMaxScaler())
    return make_pipeline(*steps)


def _imputer(spec: FeatureSpec) -> SimpleImputer:
    categorical = spec.transform in CATEGORICAL
    if spec.impute == Impute.constant:
        fill = str(spec.fill_value) if categorical else float(spec.fill_value)
        return SimpleImputer(strategy="constant", fill_value=fill, keep_empty_features=True)
    if categorical:  # any fitted fill of a category is its most frequent value
        return SimpleImputer(strategy="most_frequent", keep_empty_features=True)
    return SimpleImputer(strategy=spec.impute.value, keep_empty_features=True)


def _transform(spec: FeatureSpec) -> list[Any]:
    t = spec.transform
    if t == T.clip and spec.lower is None and spec.upper is None:
        return [QuantileClip(spec.lower_quantile or 0.0, spec.upper_quantile or 1.0)]
    if t == T.bucketize:
        return [Buckets(spec.boundaries, spec.bins)]
    if t == T.one_hot:
        return [TopCategories(spec.max_categories, spec.min_frequency)]
    if t == T.ordinal:
        cats = [[str(c) for c in spec.categories]] if spec.categories is not None else "auto"
        encoder = OrdinalEncoder(
            categories=cats, handle_unknown="use_encoded_value", unknown_value=np.nan
        )
        return [encoder, FunctionTransformer(feature_names_out=_unnamed)]
    if t == T.hashed:
        return [
            FunctionTransformer(
                _hash_bucket, kw_args={"buckets": spec.buckets}, feature_names_out="one-to-one"
            ),
            OneHotEncoder(
                categories=[list(range(spec.buckets))],
                handle_unknown="ignore",
                sparse_output=False,
                feature_name_combiner=_bucket_name,
            ),
        ]
    if t == T.date_parts:
        kw = {"parts": [p.value for p in spec.parts], "cyclic": spec.cyclic}
        return [FunctionTransformer(_date_parts, kw_args=kw, feature_names_out=_parts)]
    if t == T.group_stat:
        return [GroupStat(spec.stat.value)]
    return [FunctionTransformer(_ELEMENTWISE[t], kw_args=_bounds(spec), feature_names_out=_unnamed)]


def _bounds(spec: FeatureSpec) -> dict[str, Any]:
    return {"lower": spec.lower, "upper": spec.upper} if spec.transform == T.clip else {}


# ----------------------------------------------------------------------------- functions


def _floats(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _log1p(x: Any) -> np.ndarray:
    return np.log1p(np.maximum(_floats(x), 0.0))


def _ratio(x: Any) -> np.ndarray:
    a, b = _floats(x).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / b, np.nan)[:, None]


def _difference(x: Any) -> np.ndarray:
    a, b = _floats(x).T
    return (a - b)[:, None]


def _clip(x: Any, lower: float | None, upper: float | None) -> np.ndarray:
    return np.clip(_floats(x), lower, upper)


_ELEMENTWISE = {
    T.identity: _floats,
    T.standardize: _floats,
    T.minmax: _floats,
    T.log1p: _log1p,
    T.ratio: _ratio,
    T.difference: _difference,
    T.clip: _clip,
}


def _to_nan(x: Any) -> np.ndarray:
    x = _floats(x)
    return np.where(np.isfinite(x), x, np.nan)


def _nan_non_finite() -> FunctionTransformer:
    """Infinities become NaN, so the mean imputer after it fills every non-finite value."""
    return FunctionTransformer(_to_nan, feature_names_out="one-to-one")


def _missing_to_nan(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=object).copy()
    x[pd.isna(x)] = np.nan
    return x


def _missing_as_nan() -> FunctionTransformer:
    """Missing categories as NaN, the one missing marker every sklearn encoder recognizes."""
    return FunctionTransformer(_missing_to_nan, feature_names_out="one-to-one")


def _hash_bucket(x: Any, buckets: int) -> np.ndarray:
    v = np.asarray(x, dtype=object)[:, 0]
    present = pd.notna(v)
    h = pd.util.hash_array(np.where(present, v, "").astype(str).astype(object))
    return np.where(present, (h % buckets).astype(np.int64), -1)[:, None]


def _date_parts(x: Any, parts: list[str], cyclic: bool) -> np.ndarray:
    t = pd.DatetimeIndex(np.asarray(x)[:, 0])
    cols = []
    for p in parts:
        v = np.asarray(t.dayofweek >= 5 if p == "is_weekend" else getattr(t, p), np.float64)
        if cyclic and p in CYCLES:
            cols += [np.sin(2 * np.pi * v / CYCLES[p]), np.cos(2 * np.pi * v / CYCLES[p])]
        else:
            cols.append(v)
    out = np.column_stack(cols)
    out[np.asarray(t.isna())] = np.nan
    return out


def _unnamed(transformer: Any, names: Any) -> list[str]:
    """A one-column feature is called just by the feature's name."""
    return [""]


def _parts(transformer: FunctionTransformer, names: Any) -> list[str]:
    return [
        f".{n}" for n in part_names(transformer.kw_args["parts"], transformer.kw_args["cyclic"])
    ]


def _bucket_name(feature: str, bucket: int) -> str:
    return f"#{bucket}"


# ----------------------------------------------------------------------------- estimators


class QuantileClip(TransformerMixin, BaseEstimator):
    """Clip to bounds fitted as quantiles of the finite values (inverted CDF, like keel)."""

    def __init__(self, lower: float = 0.0, upper: float = 1.0):
        self.lower, self.upper = lower, upper

    def fit(self, x: Any, y: Any = None) -> QuantileClip:
        self.bounds_ = _quantiles(x, [self.lower, self.upper])
        return self

    def transform(self, x: Any) -> np.ndarray:
        return np.clip(_floats(x), *self.bounds_)

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        return np.array([""], dtype=object)


class Buckets(TransformerMixin, BaseEstimator):
    """One-hot of the bucket between fixed edges or fitted quantile edges; NaN -> all zeros."""

    def __init__(self, boundaries: list[float] | None = None, bins: int | None = None):
        self.boundaries, self.bins = boundaries, bins

    def fit(self, x: Any, y: Any = None) -> Buckets:
        if self.boundaries is not None:
            self.edges_ = np.asarray(self.boundaries, dtype=np.float64)
        else:
            qs = [i / self.bins for i in range(1, self.bins)]
            self.edges_ = np.unique(_quantiles(x, qs))
        return self

    def transform(self, x: Any) -> np.ndarray:
        v = _floats(x)[:, 0]
        index = np.where(np.isnan(v), -1, np.searchsorted(self.edges_, v, side="right"))
        return (index[:, None] == np.arange(len(self.edges_) + 1)).astype(np.float64)

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        bounds = ["-inf", *(f"{e:g}" for e in self.edges_), "inf"]
        return np.array([f"[{a},{b})" for a, b in itertools.pairwise(bounds)], dtype=object)


class TopCategories(TransformerMixin, BaseEstimator):
    """OneHotEncoder over the most frequent categories, plus an "other" column for the rest."""

    def __init__(self, max_categories: int = 20, min_frequency: int = 1):
        self.max_categories, self.min_frequency = max_categories, min_frequency

    def fit(self, x: Any, y: Any = None) -> TopCategories:
        counts = pd.Series(np.asarray(x, dtype=object)[:, 0]).value_counts()
        kept = sorted(
            ((c, n) for c, n in counts.items() if n >= self.min_frequency),
            key=lambda cn: (-cn[1], str(cn[0])),
        )
        self.categories_ = [c for c, _ in kept[: self.max_categories]]
        self.encoder_ = OneHotEncoder(
            categories=[self.categories_], handle_unknown="ignore", sparse_output=False
        ).fit(x)
        return self

    def transform(self, x: Any) -> np.ndarray:
        known = self.encoder_.transform(x)
        return np.hstack([known, 1.0 - known.sum(axis=1, keepdims=True)])

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        return np.array([f"={c}" for c in [*self.categories_, OTHER]], dtype=object)


class GroupStat(TransformerMixin, BaseEstimator):
    """A statistic of column 0 per value of column 1; unseen or missing groups get the overall."""

    def __init__(self, stat: str = "mean"):
        self.stat = stat

    def fit(self, x: Any, y: Any = None) -> GroupStat:
        frame = self._frame(x).dropna()
        self.groups_ = self._stat(frame.groupby("g")["v"])
        self.default_ = float(self._stat(frame["v"])) if len(frame) else 0.0
        return self

    def _stat(self, v: Any) -> Any:
        return v.std(ddof=0) if self.stat == "std" else v.agg(self.stat)  # population std

    def transform(self, x: Any) -> np.ndarray:
        values = self._frame(x)["g"].map(self.groups_).astype(np.float64)
        return values.fillna(self.default_).to_numpy()[:, None]

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        return np.array([""], dtype=object)

    @staticmethod
    def _frame(x: Any) -> pd.DataFrame:
        x = np.asarray(x, dtype=object)
        return pd.DataFrame({"v": x[:, 0].astype(np.float64), "g": x[:, 1]})


def _quantiles(x: Any, qs: list[float]) -> np.ndarray:
    v = _floats(x)[:, 0]
    v = v[np.isfinite(v)]
    return np.quantile(v, qs, method="inverted_cdf") if len(v) else np.zeros(len(qs))


# ----------------------------------------------------------------------------- equivalence


@dataclass
class Agreement:
    """How one output column of keel compares with the baseline's column of the same name."""

    column: str
    exact: bool  # held to EXACT; else to APPROX (quantile-fitted feature)
    max_abs_diff: float
    mean_abs_diff: float
    ok: bool


def approximate(spec: FeatureSpec) -> bool:
    """Whether keel fits this feature from sampled quantiles."""
    return (
        spec.impute == Impute.median
        or (spec.transform == T.clip and spec.lower is None and spec.upper is None)
        or (spec.transform == T.bucketize and spec.bins is not None)
    )


def compare(
    keel: FeaturePipeline, matrix: np.ndarray, fitted: ColumnTransformer, base: np.ndarray
) -> list[Agreement]:
    """Each keel column against its baseline column; raises when the columns do not pair up.

    Both sides emit features in declaration order. Within a feature, columns pair by name
    (order may differ); a quantile-fitted feature's names carry its fitted edges, which may
    differ, so its columns pair by position.
    """
    keel_columns, base_columns = keel.output_columns, list(fitted.get_feature_names_out())
    if matrix.shape != base.shape:
        raise KeelError(f"keel gives a {matrix.shape} matrix, the baseline {base.shape}")
    out = []
    for name, spec in keel.specs.items():
        block = fitted.output_indices_[name]
        kept, want = keel_columns[block], base_columns[block]
        exact = not approximate(spec)
        if exact and sorted(kept) != sorted(want):
            raise KeelError(f"feature '{name}': keel gives columns {kept}, the baseline {want}")
        for i, col in enumerate(kept, block.start):
            b = base[:, base_columns.index(col) if exact else i]
            diff = np.abs(matrix[:, i].astype(np.float64) - b)
            ok = (
                np.all(diff <= EXACT * (1 + np.abs(b)))
                if exact
                else diff.mean() <= APPROX * (np.std(b) or 1.0)
            )
            out.append(Agreement(col, exact, float(diff.max()), float(diff.mean()), bool(ok)))
    return out


def check(keel: FeaturePipeline, table: pa.Table, at: pa.Table | None = None) -> list[Agreement]:
    """Fit the baseline on `table`, then compare both on `at` (default: `table`).

    `keel` is already fitted (locally or through Ray, on `table` or a superset of it).
    """
    at = table if at is None else at
    fitted = baseline(keel.specs).fit(table.to_pandas())
    return compare(keel, keel.transform(at), fitted, fitted.transform(at.to_pandas()))


def failures(agreement: list[Agreement]) -> list[str]:
    return [
        f"{a.column}: max |diff| {a.max_abs_diff:.3g}, mean {a.mean_abs_diff:.3g}"
        for a in agreement
        if not a.ok
    ]


# ----------------------------------------------------------------------------- timed sides


def run_keel(path: str, cfg: KeelConfig) -> common.Phases:
    """Read, fit and transform with Ray Data, the way a keel training job does: the rows read
    once into the object store (training materializes its splits before fitting, as the
    baseline reads once into pandas), then a fit pass and a transform pass over them."""
    import ray

    fs, _ = resolve(path)
    started = time.perf_counter()
    ds = ray.data.read_parquet(path, filesystem=fs).materialize()
    pipeline = FeaturePipeline.from_config(cfg.features).fit(ds, cfg.features.batch_size)
    fitted = time.perf_counter()
    out = ds.map_batches(
        pipeline.transform_batch, batch_format="pyarrow", batch_size=cfg.features.batch_size
    ).materialize()
    rows = out.count()
    done = time.perf_counter()
    del out  # frees the object store before the baseline runs
    if rows != cfg.bench.rows:
        raise KeelError(f"keel transformed {rows:,} rows, expected {cfg.bench.rows:,}")
    return {"fit": fitted - started, "transform": done - fitted, "total": done - started}


def run_baseline(path: str, cfg: KeelConfig, n_jobs: int) -> common.Phases:
    """Read once into pandas, then `fit_transform` with scikit-learn over `n_jobs` processes.

    `fit_transform`, not `fit` then `transform`: ColumnTransformer.fit already transforms
    every column to fit the steps after it, so the pair computes the matrix twice."""
    fs, local = resolve(path)
    started = time.perf_counter()
    frame = pd.read_parquet(local, filesystem=fs)
    read = time.perf_counter()
    matrix = baseline(cfg.features.columns, n_jobs).fit_transform(frame)
    done = time.perf_counter()
    if matrix.shape[0] != cfg.bench.rows:
        raise KeelError(f"the baseline transformed {matrix.shape[0]:,} rows")
    return {"read": read - started, "fit_transform": done - read, "total": done - started}


def _sample(path: str, rows: int) -> pa.Table:
    fs, local = resolve(path)
    return pads.dataset(local, filesystem=fs, format="parquet").head(rows)


def _check_on_ray(path: str, cfg: KeelConfig) -> list[Agreement]:
    """Fit keel through Ray Data on a sample and compare; this also warms keel's tasks up."""
    import ray

    rows = int(cfg.bench.params.get("check_rows", CHECK_ROWS))
    sample = _sample(path, rows)
    parts = [sample.slice(i, rows // 4 + 1) for i in range(0, len(sample), rows // 4 + 1)]
    features = FeaturePipeline.from_config(cfg.features).fit(
        ray.data.from_arrow(parts), cfg.features.batch_size
    )
    return check(features, sample)


def _warm_reads(path: str) -> None:
    """One untimed pass over the files: the first read pays for imports and the page cache."""
    import ray

    fs, _ = resolve(path)
    ray.data.read_parquet(path, filesystem=fs).map_batches(
        _identity, batch_format="pyarrow"
    ).count()


def _identity(batch: pa.Table) -> pa.Table:
    return batch


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    """Check equivalence, then time both sides interleaved; print and write the report."""
    path = common.cached_files(cfg)
    log.info("checking that keel and the baseline agree on a sample ...")
    agreement = _check_on_ray(path, cfg)
    if bad := failures(agreement):
        raise KeelError("keel and the baseline disagree:\n  " + "\n  ".join(bad))
    log.info("all %d columns agree", len(agreement))
    settings = common.read_settings()
    log.info("Ray Data read settings: %s; warming the read path up ...", settings)
    _warm_reads(path)
    n_jobs = common.cpus_of_ray()  # the cores keel's Ray Data tasks run on
    runs = common.interleave(
        {
            "keel": lambda: run_keel(path, cfg),
            "baseline": lambda: run_baseline(path, cfg, n_jobs),
        },
        cfg.bench.repeats,
    )
    rows = cfg.bench.rows
    seconds = {side: common.medians(r) for side, r in runs.items()}
    rates = {side: common.rates(rows, s) for side, s in seconds.items()}
    ratio = rates["keel"]["total"] / rates["baseline"]["total"]
    report = common.write_report(
        cfg,
        {
            "rows": rows,
            "repeats": cfg.bench.repeats,
            "batch_size": cfg.features.batch_size,
            "baseline_n_jobs": n_jobs,
            "data": path,
            "ray_data": settings,
            **ray_times,
            "equivalence": [asdict(a) for a in agreement],
            "runs": runs,
            "median_s": seconds,
            "rows_per_s": rates,
            "ratio_keel_over_baseline": ratio,
        },
    )
    s = Summary(f"bench features: {rows:,} rows, median of {cfg.bench.repeats} interleaved runs")
    for side in ("keel", "baseline"):
        for phase, secs in seconds[side].items():
            s.add(f"{side} {phase}", f"{secs:7.2f} s {rates[side][phase]:>12,.0f} rows/s")
    s.add(
        "keel / baseline",
        f"{ratio:.2f}x (total rows/s; baseline: read, then fit_transform with n_jobs={n_jobs})",
    )
    s.add(
        "ray start-up",
        f"{ray_times['ray_startup_s']:.1f} s, worker warm-up {ray_times['ray_warmup_s']:.1f} s "
        "(not in the times above)",
    )
    s.add("ray data reads", ", ".join(f"{k}={v}" for k, v in settings.items()))
    exact = sum(a.exact for a in agreement)
    s.add("equivalence", f"{len(agreement)} columns agree: {exact} exact, the rest within {APPROX}")
    return s.add("report", report)

"""The steps a declared feature is built from, each a pure function of (batch, JSON state).

A fitted step learns its state from mergeable partial statistics (sums, counts, value counts,
weighted samples), so fitting runs as one parallel pass over a Ray Dataset per step depth and
only small summaries reach the driver. `apply` is vectorized numpy and never fails on unseen
categories or missing values: those map to an "other" column, a fitted fill value, or zeros.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keel.config.schema import FeatureSpec, Impute, Scale, Transform
from keel.data.batch import numeric, strings, text, timestamps

SAMPLE = 4096  # values kept per batch for quantiles (median, quantile clip, quantile bins)
OTHER = "__other__"


class Step:
    fitted = False  # whether the step learns state from data

    def partial(self, x: Any, batch: pa.Table) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def finalize(self, stats: Any) -> dict:
        raise NotImplementedError

    def apply(self, x: Any, batch: pa.Table, state: dict) -> Any:
        raise NotImplementedError

    def names(self, feature: str, state: dict) -> list[str] | None:
        """Output column names, or None when the step keeps its input's columns."""
        return None


# ----------------------------------------------------------------------------- statistics


def _moments(x: np.ndarray) -> dict:
    """Count, mean and M2 per column over finite values (Chan et al. merge keeps precision)."""
    ok = np.isfinite(x)
    n = ok.sum(axis=0).astype(np.float64)
    s = np.where(ok, x, 0.0).sum(axis=0)
    mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    m2 = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=0)
    return {"n": n, "mean": mean, "m2": m2}


def _merge_moments(a: dict, b: dict) -> dict:
    n = a["n"] + b["n"]
    d = b["mean"] - a["mean"]
    frac = np.divide(b["n"], n, out=np.zeros_like(n), where=n > 0)
    return {"n": n, "mean": a["mean"] + d * frac, "m2": a["m2"] + b["m2"] + d * d * a["n"] * frac}


def _sample(v: np.ndarray) -> dict:
    v = v[np.isfinite(v)]
    n = len(v)
    if n > SAMPLE:
        v = np.random.default_rng(n).choice(v, SAMPLE, replace=False)
    return {"v": v, "w": np.full(len(v), n / len(v) if len(v) else 0.0)}


def _merge_samples(a: dict, b: dict) -> dict:
    return {"v": np.concatenate([a["v"], b["v"]]), "w": np.concatenate([a["w"], b["w"]])}


def _quantiles(s: dict, qs: list[float]) -> list[float]:
    if not len(s["v"]):
        return [0.0 for _ in qs]
    order = np.argsort(s["v"], kind="stable")
    v, cw = s["v"][order], np.cumsum(s["w"][order])
    return [float(v[min(np.searchsorted(cw, q * cw[-1]), len(v) - 1)]) for q in qs]


def _counts(v: pa.Array | np.ndarray) -> Counter:
    if isinstance(v, np.ndarray):  # numbers, counted as text (ties break by text)
        values, n = np.unique(v[pd.notna(v)].astype(str), return_counts=True)
        return Counter(dict(zip(values.tolist(), n.tolist(), strict=True)))
    vc = pc.value_counts(v.drop_null())
    return Counter(
        dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    )


def _merge_counts(a: Counter, b: Counter) -> Counter:
    return a + b


def _mode(counts: Counter) -> str | None:
    """The most frequent value; ties go to the smallest, so batching never changes it."""
    return min(counts.items(), key=lambda cn: (-cn[1], cn[0]))[0] if counts else None


def _one_hot(index: np.ndarray, width: int) -> np.ndarray:
    """Rows of zeros with a 1 at `index`; index < 0 gives a row of zeros."""
    out = np.zeros((len(index), width))
    ok = index >= 0
    out[np.flatnonzero(ok), index[ok]] = 1.0
    return out


def _lookup(values: pa.Array, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in the vocabulary, -1 when unseen or missing."""
    index = pc.index_in(values, value_set=pa.array(vocabulary, pa.string()))
    return index.fill_null(-1).to_numpy().astype(np.int64)


# ----------------------------------------------------------------------------- imputation


class ImputeNumbers(Step):
    def __init__(self, spec: FeatureSpec):
        self.how = spec.impute
        self.fitted = self.how in (Impute.mean, Impute.median, Impute.most_frequent)
        self.constant = spec.fill_value

    def partial(self, x, batch):
        if self.how == Impute.mean:
            return [_moments(v[:, None]) for v in x]
        if self.how == Impute.median:
            return [_sample(v) for v in x]
        return [_counts(v) for v in x]

    def merge(self, a, b):
        fn = {Impute.mean: _merge_moments, Impute.median: _merge_samples}.get(
            self.how, _merge_counts
        )
        return [fn(p, q) for p, q in zip(a, b, strict=True)]

    def finalize(self, stats):
        if self.how == Impute.mean:
            return {"fill": [float(s["mean"][0]) for s in stats]}
        if self.how == Impute.median:
            return {"fill": [_quantiles(s, [0.5])[0] for s in stats]}
        return {"fill": [float(_mode(c)) if c else 0.0 for c in stats]}

    def apply(self, x, batch, state):
        fills = state["fill"] if self.fitted else [float(self.constant)] * len(x)
        return [np.where(np.isnan(v), f, v) for v, f in zip(x, fills, strict=True)]


class ImputeCategories(Step):
    def __init__(self, spec: FeatureSpec):
        self.fitted = spec.impute != Impute.constant
        self.constant = None if spec.fill_value is None else str(spec.fill_value)

    def partial(self, x, batch):
        return _counts(x[0])

    merge = staticmethod(_merge_counts)

    def finalize(self, stats):
        return {"fill": _mode(stats) if stats else OTHER}

    def apply(self, x, batch, state):
        fill = state["fill"] if self.fitted else self.constant
        return [x[0].fill_null(fill) if fill is not None else x[0]]


# ----------------------------------------------------------------------------- transforms


class Elementwise(Step):
    """identity, standardize, minmax, log1p, ratio, difference, and clip with fixed bounds."""

    def __init__(self, spec: FeatureSpec):
        self.op = spec.transform
        self.lower, self.upper = spec.lower, spec.upper

    def apply(self, x, batch, state):
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.op == Transform.ratio:
                v = np.where(x[1] != 0, x[0] / x[1], np.nan)
            elif self.op == Transform.difference:
                v = x[0] - x[1]
            elif self.op == Transform.log1p:
                v = np.log1p(np.maximum(x[0], 0.0))  # negative counts/amounts floor at 0
            elif self.op == Transform.clip:
                v = np.clip(x[0], self.lower, self.upper)
            else:
                v = x[0]
        return v[:, None]

    def names(self, feature, state):
        return [feature]


class QuantileClip(Step):
    fitted = True

    def __init__(self, spec: FeatureSpec):
        self.q = [spec.lower_quantile or 0.0, spec.upper_quantile or 1.0]

    def partial(self, x, batch):
        return _sample(x[0])

    merge = staticmethod(_merge_samples)

    def finalize(self, stats):
        lo, hi = _quantiles(stats, self.q)
        return {"lower": lo, "upper": hi}

    def apply(self, x, batch, state):
        return np.clip(x[0], state["lower"], state["upper"])[:, None]

    def names(self, feature, state):
        return [feature]


class Bucketize(Step):
    def __init__(self, spec: FeatureSpec):
        self.boundaries, self.bins = spec.boundaries, spec.bins
        self.fitted = spec.boundaries is None

    def partial(self, x, batch):
        return _sample(x[0])

    merge = staticmethod(_merge_samples)

    def finalize(self, stats):
        edges = _quantiles(stats, [i / self.bins for i in range(1, self.bins)])
        return {"boundaries": sorted(set(edges))}

    def _edges(self, state):
        return list(self.boundaries) if self.boundaries is not None else state["boundaries"]

    def apply(self, x, batch, state):
        edges = self._edges(state)
        index = np.searchsorted(np.asarray(edges, float), x[0], side="right")
        return _one_hot(np.where(np.isnan(x[0]), -1, index), len(edges) + 1)

    def names(self, feature, state):
        edges = [f"{e:g}" for e in self._edges(state)]
        bounds = ["-inf", *edges, "inf"]
        return [f"{feature}[{a},{b})" for a, b in itertools.pairwise(bounds)]


class Vocabulary(Step):
    """one_hot (most frequent categories + an "other" column) and ordinal codes."""

    def __init__(self, spec: FeatureSpec):
        self.one_hot = spec.transform == Transform.one_hot
        self.categories = None if spec.categories is None else [str(c) for c in spec.categories]
        self.fitted = self.categories is None
        self.max_categories, self.min_frequency = spec.max_categories, spec.min_frequency

    def partial(self, x, batch):
        return _counts(x[0])

    merge = staticmethod(_merge_counts)

    def finalize(self, stats):
        keep = [(c, n) for c, n in stats.items() if n >= self.min_frequency]
        keep.sort(key=lambda cn: (-cn[1], cn[0]))
        cats = [c for c, _ in keep[: self.max_categories]] if self.one_hot else sorted(stats)
        return {"categories": cats}

    def _cats(self, state):
        return self.categories if self.categories is not None else state["categories"]

    def apply(self, x, batch, state):
        cats = self._cats(state)
        index = _lookup(x[0], cats)
        if self.one_hot:
            return _one_hot(np.where(index < 0, len(cats), index), len(cats) + 1)
        return np.where(index < 0, np.nan, index).astype(np.float64)[:, None]

    def names(self, feature, state):
        if not self.one_hot:
            return [feature]
        return [f"{feature}={c}" for c in [*self._cats(state), OTHER]]


class Hashed(Step):
    def __init__(self, spec: FeatureSpec):
        self.buckets = spec.buckets

    def apply(self, x, batch, state):
        enc = pc.dictionary_encode(x[0])
        words = np.asarray(enc.dictionary.to_pylist(), dtype=object)
        bucket = np.append((pd.util.hash_array(words) % self.buckets).astype(np.int64), -1)
        index = enc.indices.fill_null(-1).to_numpy().astype(np.int64)
        return _one_hot(bucket[index], self.buckets)  # index -1 (missing) -> -1: no bucket

    def names(self, feature, state):
        return [f"{feature}#{i}" for i in range(self.buckets)]


class DateParts(Step):
    def __init__(self, spec: FeatureSpec):
        self.parts = [p.value for p in spec.parts]
        self.cyclic = spec.cyclic

    PARTS = {
        "year": pc.year,
        "month": pc.month,
        "day": pc.day,
        "dayofweek": pc.day_of_week,
        "dayofyear": pc.day_of_year,
        "hour": pc.hour,
        "is_weekend": lambda t: pc.greater_equal(pc.day_of_week(t), 5),
    }

    def apply(self, x, batch, state):
        t = x[0]
        values = [
            pc.cast(self.PARTS[p](t), pa.float64()).to_numpy(zero_copy_only=False)
            for p in self.parts
        ]
        return np.column_stack(
            [c for p, v in zip(self.parts, values, strict=True) for c in cycle(p, v, self.cyclic)]
        )

    def names(self, feature, state):
        return [f"{feature}.{name}" for name in part_names(self.parts, self.cyclic)]


# The length of each cyclic date part's cycle, in its own units (day of month: 31 for every
# month, so the 1st sits beside the 31st but the 30th of April is not quite the 1st of May).
CYCLES = {"month": 12, "day": 31, "dayofweek": 7, "dayofyear": 366, "hour": 24}


def part_names(parts: list[str], cyclic: bool) -> list[str]:
    """The names of date parts' columns, in `cycle`'s order: `hour`, or `hour_sin`, `hour_cos`."""
    return [
        f"{p}{suffix}"
        for p in parts
        for suffix in (("_sin", "_cos") if cyclic and p in CYCLES else ("",))
    ]


def cycle(part: str, values: np.ndarray, cyclic: bool) -> list[np.ndarray]:
    """A date part's columns: its values, or (cyclic) the sine and cosine of its angle in its
    cycle, so the last value sits beside the first (hour 23 beside hour 0, December beside
    January); year and is_weekend have no cycle and stay as they are. NaN stays NaN."""
    if not cyclic or part not in CYCLES:
        return [values]
    angle = 2 * np.pi * values / CYCLES[part]
    return [np.sin(angle), np.cos(angle)]


class GroupStatistic(Step):
    """A statistic of the input per value of `by`, fitted on training data."""

    fitted = True

    def __init__(self, spec: FeatureSpec):
        self.by, self.stat = spec.by, spec.stat.value

    def partial(self, x, batch):
        frame = pd.DataFrame({"g": strings(batch, self.by), "v": x[0]}).dropna()
        frame["q"] = frame["v"] ** 2
        g = frame.groupby("g")
        return pd.DataFrame(
            {
                "n": g["v"].count(),
                "s": g["v"].sum(),
                "q": g["q"].sum(),
                "lo": g["v"].min(),
                "hi": g["v"].max(),
            }
        )

    def merge(self, a, b):
        both = pd.concat([a, b])
        g = both.groupby(level=0)
        return pd.DataFrame(
            {
                "n": g["n"].sum(),
                "s": g["s"].sum(),
                "q": g["q"].sum(),
                "lo": g["lo"].min(),
                "hi": g["hi"].max(),
            }
        )

    def finalize(self, stats):
        def value(n, s, q, lo, hi):
            mean = s / n if n else 0.0
            std = float(np.sqrt(max(q / n - mean * mean, 0.0))) if n else 0.0
            return {"mean": mean, "std": std, "min": lo, "max": hi, "count": n}[self.stat]

        groups = {
            str(k): float(value(*r)) for k, r in zip(stats.index, stats.to_numpy(), strict=True)
        }
        total = stats.sum()
        overall = (
            value(total.n, total.s, total.q, stats.lo.min(), stats.hi.max()) if len(stats) else 0.0
        )
        return {"groups": groups, "default": float(overall)}

    def apply(self, x, batch, state):
        keys = list(state["groups"])
        table = np.append(np.asarray(list(state["groups"].values()), float), state["default"])
        index = _lookup(text(batch, self.by), keys)
        return table[np.where(index < 0, len(keys), index)][:, None]

    def names(self, feature, state):
        return [feature]


# ----------------------------------------------------------------------------- after transforms


class FillScale(Step):
    """Non-finite outputs become the fitted mean, then an optional scaler: one fitting pass.

    Filling with the mean keeps the mean and M2 of the finite values and the finite min/max,
    so the scaler's statistics follow from the same partials (no second pass).
    """

    fitted = True

    def __init__(self, how: Scale):
        self.how = how

    def partial(self, x, batch):
        ok = np.isfinite(x)
        return {
            **_moments(x),
            "rows": float(len(x)),
            "lo": np.where(ok, x, np.inf).min(axis=0, initial=np.inf),
            "hi": np.where(ok, x, -np.inf).max(axis=0, initial=-np.inf),
        }

    def merge(self, a, b):
        return {
            **_merge_moments(a, b),
            "rows": a["rows"] + b["rows"],
            "lo": np.minimum(a["lo"], b["lo"]),
            "hi": np.maximum(a["hi"], b["hi"]),
        }

    def finalize(self, stats):
        fill = stats["mean"]
        out = {"fill": fill.tolist()}
        if self.how == Scale.standardize:
            rows = stats["rows"]
            std = np.sqrt(stats["m2"] / rows) if rows else np.zeros_like(fill)
            out.update(center=fill.tolist(), scale=np.where(std > 0, std, 1.0).tolist())
        elif self.how == Scale.minmax:
            lo = np.where(np.isfinite(stats["lo"]), stats["lo"], fill)
            hi = np.where(np.isfinite(stats["hi"]), stats["hi"], fill)
            out.update(center=lo.tolist(), scale=np.where(hi - lo > 0, hi - lo, 1.0).tolist())
        return out

    def apply(self, x, batch, state):
        x = np.where(np.isfinite(x), x, np.asarray(state["fill"]))
        if self.how == Scale.none:
            return x
        return (x - np.asarray(state["center"])) / np.asarray(state["scale"])


# ----------------------------------------------------------------------------- assembly

CATEGORICAL = {Transform.one_hot, Transform.ordinal, Transform.hashed}
ENCODED = {Transform.one_hot, Transform.hashed, Transform.bucketize}  # 0/1 columns: no fill/scale


def build(spec: FeatureSpec) -> list[Step]:
    """The ordered steps of one declared feature."""
    steps: list[Step] = []
    if spec.impute != Impute.none:
        impute = ImputeCategories if spec.transform in CATEGORICAL else ImputeNumbers
        steps.append(impute(spec))
    t = spec.transform
    if t == Transform.clip and spec.lower is None and spec.upper is None:
        steps.append(QuantileClip(spec))
    elif t == Transform.bucketize:
        steps.append(Bucketize(spec))
    elif t in (Transform.one_hot, Transform.ordinal):
        steps.append(Vocabulary(spec))
    elif t == Transform.hashed:
        steps.append(Hashed(spec))
    elif t == Transform.date_parts:
        steps.append(DateParts(spec))
    elif t == Transform.group_stat:
        steps.append(GroupStatistic(spec))
    else:
        steps.append(Elementwise(spec))
    if t not in ENCODED:
        scale = {Transform.standardize: Scale.standardize, Transform.minmax: Scale.minmax}.get(
            t, spec.scale
        )
        steps.append(FillScale(scale))
    return steps


def inputs(spec: FeatureSpec) -> list[str]:
    return list(spec.inputs) if spec.inputs else [spec.input]


def read(spec: FeatureSpec, batch: pa.Table) -> list[np.ndarray]:
    """The feature's raw input columns as arrays of the kind its transform works on."""
    if spec.transform in CATEGORICAL:
        reader = text
    elif spec.transform == Transform.date_parts:
        reader = _arrow_timestamps
    else:
        reader = numeric
    return [reader(batch, name) for name in inputs(spec)]


def _arrow_timestamps(batch: pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        return col.combine_chunks()
    return pa.array(timestamps(batch, name))

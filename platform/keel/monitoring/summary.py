"""What the drift report shows of each column beside its verdict: summary statistics and a
histogram of the reference and the window on shared bins, computed with numpy in one pass over
the sampled window (the reference is a few thousand rows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .drift import NUMERICAL

BINS = 20  # numerical histograms: equal-width bins over both sides' range
TOP = 10  # categorical histograms: the most frequent values of both sides, then "other"
OTHER = "(other)"


@dataclass(frozen=True)
class Side:
    """One side's statistics of a column (numbers are None where the column has none)."""

    count: int  # non-null values
    missing: float  # share of null values
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    p50: float | None = None
    max: float | None = None
    unique: int | None = None  # categorical: distinct values
    top: str | None = None  # categorical: the most frequent value


@dataclass(frozen=True)
class Column:
    kind: str  # drift.NUMERICAL or drift.CATEGORICAL
    reference: Side
    current: Side
    bins: list[str]  # histogram bin labels (numerical: left edges)
    reference_share: list[float]  # share of each side's values in each bin
    current_share: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def _numbers(s: pd.Series) -> np.ndarray:
    values = s.to_numpy(np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def _side(s: pd.Series, kind: str) -> Side:
    missing = float(s.isna().mean()) if len(s) else 0.0
    if kind == NUMERICAL:
        v = _numbers(s)
        if not len(v):
            return Side(0, missing)
        lo, mid, hi = np.percentile(v, [0, 50, 100])
        mean, std = float(v.mean()), float(v.std())
        return Side(len(v), missing, mean, std, float(lo), float(mid), float(hi))
    counts = s.value_counts()
    top = str(counts.index[0]) if len(counts) else None
    return Side(int(counts.sum()), missing, unique=len(counts), top=top)


def column(ref: pd.Series, cur: pd.Series, kind: str) -> Column:
    sides = _side(ref, kind), _side(cur, kind)
    if kind == NUMERICAL:
        r, c = _numbers(ref), _numbers(cur)
        both = np.concatenate([r, c])
        if not len(both):
            return Column(kind, *sides, [], [], [])
        edges = np.histogram_bin_edges(both, BINS)
        shares = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (r, c)]
        labels = [f"{e:.4g}" for e in edges[:-1]]
        return Column(kind, *sides, labels, *(x.tolist() for x in shares))
    counts = pd.concat(
        [ref.value_counts(normalize=True), cur.value_counts(normalize=True)], axis=1
    ).fillna(0.0)
    order = counts.sum(axis=1).sort_values(ascending=False, kind="stable").index
    kept, rest = order[:TOP], order[TOP:]
    shares = [counts.loc[kept].iloc[:, i].tolist() for i in (0, 1)]
    labels = [str(v) for v in kept]
    if len(rest):
        labels.append(OTHER)
        for i in (0, 1):
            shares[i].append(float(counts.loc[rest].iloc[:, i].sum()))
    return Column(kind, *sides, labels, *shares)

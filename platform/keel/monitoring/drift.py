"""Per-column drift of a window against the version's reference: keel's own engine.

The verdict is Evidently's: the same method per column (Evidently's default choice, or the one
configured), the same score and the same drift rule. The five methods Evidently picks by
default (normed Wasserstein, Jensen-Shannon, K-S, chi-square, Z) are computed here with numpy
and scipy, as Evidently's own functions compute them, because running them inside an Evidently
Report costs seconds of figure building per run (most of `keel monitor`'s time, measured with
`bench=monitor`). Any other Evidently method named in the config is run by Evidently itself,
imported only then. Tests hold the engine to Evidently's scores and verdicts on files keel did
not generate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from keel.config.schema import ColumnSpec, ColumnType, DriftSpec, MonitorConfig
from keel.errors import ConfigError

PREDICTION = "prediction"
NUMERICAL, CATEGORICAL = "num", "cat"  # Evidently's names for the two kinds of drift column
KIND = {
    ColumnType.int: NUMERICAL,
    ColumnType.float: NUMERICAL,
    ColumnType.category: CATEGORICAL,
    ColumnType.string: CATEGORICAL,
    ColumnType.bool: CATEGORICAL,
}  # timestamps have no drift test and are left out
SMALL_REFERENCE = 1_000  # Evidently's default methods change above this many reference rows


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: the method, its score against the threshold, the call."""

    method: str  # Evidently's name of the test
    score: float  # a p-value (drift when low) or a distance (drift when high)
    threshold: float
    drifted: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnDrift:
        return cls(
            str(data["method"]),
            float(data["score"]),
            float(data["threshold"]),
            bool(data["drifted"]),
        )


@dataclass
class DriftResult:
    columns: dict[str, ColumnDrift]  # input column -> its test
    prediction: ColumnDrift | None  # the "prediction" column's (None when absent)
    share: float  # drifted input columns / checked input columns


@dataclass(frozen=True)
class Method:
    """A drift method: its Evidently name, the kinds of column it applies to, its default
    threshold, and whether the score is a p-value (drift when low) or a distance."""

    name: str
    kinds: frozenset[str]
    threshold: float
    p_value: bool
    strict: bool = False  # a p-value drifts when < threshold (else <=); distances when >=
    score: Callable[[pd.Series, pd.Series, str], float] | None = None  # None: Evidently's

    def drifted(self, score: float, threshold: float) -> bool:
        if not self.p_value:
            return score >= threshold
        return score < threshold if self.strict else score <= threshold


# ----------------------------------------------------------------------------- the scores
# Each is the formula of Evidently 0.7's function of the same name (legacy/calculations/
# stattests), on columns already cleaned of NaN and infinities.


def _wasserstein(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    norm = max(float(np.std(ref.to_numpy(np.float64))), 0.001)
    return float(stats.wasserstein_distance(ref, cur) / norm)


def _shares(ref: pd.Series, cur: pd.Series, kind: str, bins: int = 30) -> tuple:
    """Evidently's get_binned_data without zero filling: Sturges bins of both sides for a
    numerical column with more than 20 reference values, else each value's share."""
    if kind == NUMERICAL and ref.nunique() > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref.to_numpy(), cur.to_numpy()]), "sturges")
        return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    r, c = _aligned_counts(ref, cur)
    return r / len(ref), c / len(cur)


def _aligned_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    counts = pd.concat([ref.value_counts(), cur.value_counts()], axis=1).fillna(0)
    return counts.iloc[:, 0].to_numpy(np.float64), counts.iloc[:, 1].to_numpy(np.float64)


def _jensenshannon(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    return float(distance.jensenshannon(*_shares(ref, cur, kind)))


def _ks(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    return float(stats.ks_2samp(ref, cur)[1])


def _chisquare(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    r, c = _aligned_counts(ref, cur)
    return float(stats.chisquare(c, r * (len(cur) / len(ref)))[1])


def _z(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    values = pd.unique(pd.concat([ref, cur]))
    if len(values) == 1:
        return 1.0
    first = sorted(values)[0]  # Evidently: share of rows not equal to the smallest value
    p1, p2 = float((ref != first).mean()), float((cur != first).mean())
    n1, n2 = len(ref), len(cur)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


BOTH = frozenset({NUMERICAL, CATEGORICAL})
NATIVE = {
    m.name: m
    for m in (
        Method("wasserstein", frozenset({NUMERICAL}), 0.1, False, score=_wasserstein),
        Method("jensenshannon", BOTH, 0.1, False, score=_jensenshannon),
        Method("ks", frozenset({NUMERICAL}), 0.05, True, score=_ks),
        Method("chisquare", frozenset({CATEGORICAL}), 0.05, True, strict=True, score=_chisquare),
        Method("z", frozenset({CATEGORICAL}), 0.05, True, strict=True, score=_z),
    )
}


def default_method(ref: pd.Series, cur: pd.Series, kind: str) -> Method:
    """Evidently's choice (stattests.registry._get_default_stattest) for a cleaned column."""
    values = pd.concat([ref, cur]).nunique()
    if len(ref) <= SMALL_REFERENCE:
        if kind == NUMERICAL and values > 5:
            return NATIVE["ks"]
        return NATIVE["chisquare" if values > 2 else "z"]
    if kind == NUMERICAL and values > 5:
        return NATIVE["wasserstein"]
    return NATIVE["jensenshannon"]


@cache
def _evidently() -> dict[str, Any]:
    """Evidently's other methods for numerical or categorical columns, by name."""
    from evidently.legacy.calculations import stattests

    return {
        t.name: t
        for t in vars(stattests).values()
        if isinstance(t, stattests.StatTest)
        and t.name not in NATIVE
        and BOTH & {k.value for k in t.allowed_feature_types}
    }


def known(name: str) -> Method | None:
    """A method by its Evidently name (Evidently is imported only for a non-native name)."""
    if name in NATIVE:
        return NATIVE[name]
    if (t := _evidently().get(name)) is None:
        return None
    kinds = frozenset(k.value for k in t.allowed_feature_types) & BOTH
    return Method(t.name, kinds, t.default_threshold, p_value=False)  # Evidently decides


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Test:
    """A column's configured test: a method (None: Evidently's default choice per run) and a
    threshold (None: the method's default)."""

    method: Method | None = None
    threshold: float | None = None

    def run(self, ref: pd.Series, cur: pd.Series, kind: str) -> ColumnDrift:
        method = self.method or default_method(ref, cur, kind)
        threshold = method.threshold if self.threshold is None else self.threshold
        if method.score is None:
            score, drifted = _by_evidently(method.name, ref, cur, kind, threshold)
        else:
            score = method.score(ref, cur, kind)
            drifted = method.drifted(score, threshold)
        return ColumnDrift(method.name, float(score), float(threshold), bool(drifted))


def _by_evidently(
    name: str, ref: pd.Series, cur: pd.Series, kind: str, threshold: float
) -> tuple[float, bool]:
    from evidently.legacy.core import ColumnType as EvidentlyType

    result = _evidently()[name](ref, cur, EvidentlyType(kind), threshold)
    return float(result.drift_score), bool(result.drifted)


def test_of(spec: DriftSpec, key: str, kind: str, column: str = PREDICTION) -> Test:
    """A spec's test, checked before anything runs. A named method without a threshold gets
    that method's default threshold."""
    if spec.method is None:
        return Test(None, spec.threshold)
    method = known(spec.method)
    if method is None:
        names = sorted({*NATIVE, *_evidently()})
        raise ConfigError(
            f"{key}.method: unknown drift method '{spec.method}'; known: {', '.join(names)}"
        )
    if kind not in method.kinds:
        word = "numerical" if kind == NUMERICAL else "categorical"
        hint = f"; override it under monitor.columns.{column}" if key == "monitor.drift" else ""
        raise ConfigError(
            f"{key}.method: drift method '{spec.method}' does not apply to {word} column "
            f"'{column}'{hint}"
        )
    return Test(method, spec.threshold)


def column_tests(kinds: dict[str, str], monitor: MonitorConfig) -> dict[str, Test]:
    """Each input column's test: its monitor.columns entry over monitor.drift.

    An entry that names a method gets that method's default threshold rather than
    monitor.drift.threshold: a p-value cutoff is no distance cutoff.
    """
    if unknown := sorted(set(monitor.columns) - set(kinds)):
        raise ConfigError(
            f"monitor.columns.{unknown[0]}: not a monitored input column; "
            f"monitored: {', '.join(kinds)}"
        )
    tests = {}
    for column, kind in kinds.items():
        own = monitor.columns.get(column) or DriftSpec()
        if own.method is not None:
            spec, key = own, f"monitor.columns.{column}"
        else:
            threshold = monitor.drift.threshold if own.threshold is None else own.threshold
            spec, key = DriftSpec(monitor.drift.method, threshold), "monitor.drift"
        tests[column] = test_of(spec, key, kind, column)
    return tests


# ----------------------------------------------------------------------------- a window


def kinds_of(columns: dict[str, ColumnSpec]) -> dict[str, str]:
    return {c: KIND[ColumnType(s.type)] for c, s in columns.items() if ColumnType(s.type) in KIND}


def frame(df: pd.DataFrame, columns: dict[str, ColumnSpec], extra: list[str]) -> pd.DataFrame:
    """The compared columns (and `extra`), sharing df's data where no cast is needed.
    Categorical values become str (bools, pandas categoricals, numeric codes) so both sides
    compare equal labels; nulls stay null."""
    out = {}
    for c, kind in kinds_of(columns).items():
        s = df[c]
        if kind == CATEGORICAL and (
            ColumnType(columns[c].type) is ColumnType.bool or s.dtype != object
        ):
            s = s.astype(object).map(str, na_action="ignore")
        out[c] = s
    return pd.DataFrame({**out, **{c: df[c] for c in extra}}, copy=False)


def _clean(s: pd.Series) -> pd.Series:
    """What Evidently compares: the column without nulls and infinities."""
    if pd.api.types.is_numeric_dtype(s):
        values = s.to_numpy(np.float64, na_value=np.nan)
        return pd.Series(values[np.isfinite(values)])
    return s.dropna()


def compare(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    monitor: MonitorConfig,
) -> DriftResult:
    """Drift of every input column and of the prediction (when both frames have it), the
    window `cur` against `ref`, both as `frame` gives them. A column that is all null on either
    side cannot be compared: it is left out of the result and of its share."""
    kinds = kinds_of(columns)
    tests = column_tests(kinds, monitor)
    predicted = test_of(monitor.prediction_drift, "monitor.prediction_drift", NUMERICAL)
    results = {}
    for c, kind in kinds.items():
        r, k = _clean(ref[c]), _clean(cur[c])
        if len(r) and len(k):
            results[c] = tests[c].run(r, k, kind)
    prediction = None
    if PREDICTION in cur and PREDICTION in ref:
        prediction = predicted.run(_clean(ref[PREDICTION]), _clean(cur[PREDICTION]), NUMERICAL)
    share = sum(r.drifted for r in results.values()) / len(results) if results else 0.0
    return DriftResult(results, prediction, share)

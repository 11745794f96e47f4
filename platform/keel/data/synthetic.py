"""Deterministic synthetic datasets with a known ground truth, planted invalid rows and drift.

Chunk ``c`` is a pure function of (config, c): its data come from ``default_rng([seed, c, 0])``,
its plan of invalid rows from ``[seed, c, 1]`` and its covariate drift from ``[seed, c, 2]``.
The plan has its own stream so ``planted()`` can count what a validator must find without
generating data; drift has its own stream so shifting one column leaves every other input
column byte-identical. Per dataset there is only an inputs function (clean features) and a
truth function (target from features); planting, drift and table assembly are generic and
driven by the column specs, so a new generator gets them for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from keel.config.schema import ColumnSpec, ColumnType, DatasetConfig, SourceConfig

Columns = dict[str, np.ndarray]
Shift = Callable[[Columns], Columns]
Clean = Callable[[np.random.Generator, np.ndarray, DatasetConfig, Shift], Columns]

RULES = ("min", "max", "allowed", "regex", "nullable", "unique")
_NUMERIC = (ColumnType.int, ColumnType.float)
_TEXT = (ColumnType.string, ColumnType.category)
_NOT_SHIFTABLE = (None, ColumnType.string, ColumnType.timestamp)  # None: no such column
_ARROW = {
    ColumnType.int: pa.int64(),
    ColumnType.float: pa.float64(),
    ColumnType.string: pa.string(),
    ColumnType.category: pa.string(),
    ColumnType.bool: pa.bool_(),
    ColumnType.timestamp: pa.timestamp("us"),
}


# ----------------------------------------------------------------------------- small helpers


def _pick(rng: np.random.Generator, probs: Sequence[float], n: int) -> np.ndarray:
    """Category codes drawn with weights `probs` (inverse CDF: one uniform per row)."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(probs) - 1)


def _labels(names: Sequence[str], codes: np.ndarray) -> np.ndarray:
    return np.asarray(names, dtype=object)[codes]


def _effect(values: np.ndarray, effects: dict[str, float]) -> np.ndarray:
    """Per-row additive effect of a categorical column (unknown labels and nulls add 0)."""
    out = np.zeros(len(values))
    for label, eff in effects.items():
        out[values == label] = eff
    return out


def _lerp(a: dict[str, float], b: dict[str, float], t: float) -> dict[str, float]:
    return {k: (1 - t) * a[k] + t * b[k] for k in a}


def _ids(prefix: str, rows: np.ndarray) -> np.ndarray:
    # derived from the global row index: unique across chunks and independent of chunking
    return np.char.mod(prefix + "%08d", rows).astype(object)


def _timestamps(rng: np.random.Generator, n: int, src: SourceConfig) -> np.ndarray:
    start = np.datetime64(src.start, "us")
    return start + rng.integers(0, src.days * 86_400_000_000, n).astype("timedelta64[us]")


def _isnull(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        return np.equal(x, None)
    return np.isnan(x) if x.dtype.kind == "f" else np.zeros(len(x), bool)


def _conform(spec: ColumnSpec, x: np.ndarray) -> np.ndarray:
    """Clip numeric values into the declared range (ints rounded) so clean data never fail."""
    kind = ColumnType(spec.type)
    if kind not in _NUMERIC:
        return x
    lo = -np.inf if spec.min is None else spec.min
    hi = np.inf if spec.max is None else spec.max
    x = np.clip(x, lo, hi)
    return np.round(x).astype(np.int64) if kind is ColumnType.int else x


# ----------------------------------------------------------------------------- churn

CONTRACTS = ("month-to-month", "one-year", "two-year")
REGIONS = ("north", "south", "east", "west", "central")
PAYMENTS = ("card", "bank-transfer", "electronic-check", "mailed-check", "paypal")
INTERNET = ("none", "dsl", "fiber")
# ground truth (log-odds); the concept-shifted relation reverses what loyalty signals
_CONTRACT = {"month-to-month": 0.9, "one-year": -0.5, "two-year": -1.6}
_CONTRACT_SHIFTED = {"month-to-month": -0.6, "one-year": 0.2, "two-year": 0.9}
_INTERNET_EFF = {"none": -0.6, "dsl": 0.0, "fiber": 0.45}
_REGION_EFF = {"north": 0.0, "south": 0.15, "east": -0.1, "west": 0.05, "central": 0.3}


def _churn_inputs(rng: np.random.Generator, rows: np.ndarray, src: SourceConfig) -> Columns:
    n = len(rows)
    contract = _pick(rng, [0.55, 0.25, 0.20], n)
    internet = _pick(rng, [0.2, 0.35, 0.45], n)
    age = 18 + rng.gamma(3.0, 9.0, n)
    # longer contracts go with longer-standing customers
    tenure = np.round(rng.exponential(np.array([14.0, 32.0, 50.0])[contract]))
    base = np.array([22.0, 55.0, 88.0])[internet]
    monthly = np.round(base * rng.lognormal(0.0, 0.25, n) + rng.normal(0.0, 5.0, n), 2)
    total = np.round(monthly * tenure * rng.normal(1.0, 0.05, n), 2)
    total[rng.random(n) < 0.05] = np.nan  # not billed yet / lost in a migration
    payment = _labels(PAYMENTS, _pick(rng, [0.32, 0.24, 0.22, 0.12, 0.10], n))
    payment[rng.random(n) < 0.03] = None
    # fiber customers and new customers call support more
    calls = rng.poisson(0.5 + 0.6 * (internet == 2) + 8.0 / (tenure + 8.0))
    return {
        "customer_id": _ids("C", rows),
        "signup_ts": _timestamps(rng, n, src),
        "age": age,
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total,
        "contract": _labels(CONTRACTS, contract),
        "region": _labels(REGIONS, _pick(rng, [0.22, 0.18, 0.2, 0.25, 0.15], n)),
        "payment_method": payment,
        "internet_service": _labels(INTERNET, internet),
        "support_calls": calls,
    }


def _churn_truth(cols: Columns, rng: np.random.Generator, concept: float) -> np.ndarray:
    tenure_coef = (1 - concept) * -0.04 + concept * 0.02
    logit = (
        -2.4
        + _effect(cols["contract"], _lerp(_CONTRACT, _CONTRACT_SHIFTED, concept))
        + tenure_coef * (cols["tenure_months"] - 24)
        + 0.018 * (cols["monthly_charges"] - 65)
        + 0.3 * (cols["support_calls"] - 1.5)
        - 0.02 * (cols["age"] - 45)
        + _effect(cols["internet_service"], _INTERNET_EFF)
        + _effect(cols["region"], _REGION_EFF)
    )
    return (rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)


# ----------------------------------------------------------------------------- listings

NEIGHBORHOODS = ("downtown", "riverside", "old-town", "university", "suburbs", "harbor", "hills")
PROPERTY_TYPES = ("apartment", "house", "condo", "studio", "loft")
# log-price premiums; the concept-shifted market prefers space and the outskirts
_PREMIUM = dict(zip(NEIGHBORHOODS, (0.4, 0.18, 0.22, -0.05, -0.18, 0.32, 0.08), strict=True))
_PREMIUM_SHIFTED = dict(zip(NEIGHBORHOODS, (0.05, 0.25, 0.05, 0.1, 0.15, 0.2, 0.3), strict=True))
_TYPE_EFF = {"apartment": 0.0, "house": 0.1, "condo": 0.08, "studio": -0.05, "loft": 0.15}


def _listings_inputs(rng: np.random.Generator, rows: np.ndarray, src: SourceConfig) -> Columns:
    n = len(rows)
    hood = _pick(rng, [0.2, 0.13, 0.11, 0.16, 0.24, 0.09, 0.07], n)
    ptype = _pick(rng, [0.44, 0.2, 0.17, 0.12, 0.07], n)
    # rooms by property type (studios have none), floor area by rooms and type
    extra_rooms = rng.poisson(np.array([0.8, 1.2, 0.7, 0.0, 0.3])[ptype])
    bedrooms = np.array([1, 2, 1, 0, 1])[ptype] + extra_rooms
    size = np.array([1.0, 1.35, 1.05, 1.0, 1.4])[ptype]
    sqft = np.round((350 + 400 * bedrooms) * size * rng.lognormal(0.0, 0.22, n))
    bathrooms = np.maximum(np.round(2 * (1 + 0.45 * bedrooms + rng.normal(0, 0.35, n))) / 2, 1)
    rating = np.round(1 + 4 * rng.beta(9.0, 2.0, n), 1)
    rating[rng.random(n) < 0.08] = np.nan  # new listings have no rating yet
    return {
        "listing_id": _ids("L", rows),
        "listed_at": _timestamps(rng, n, src),
        "sqft": sqft,
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "neighborhood": _labels(NEIGHBORHOODS, hood),
        "property_type": _labels(PROPERTY_TYPES, ptype),
        "amenities": rng.binomial(20, np.array([0.35, 0.3, 0.45, 0.25, 0.4])[ptype]),
        "has_parking": rng.random(n) < np.array([0.25, 0.5, 0.3, 0.4, 0.85, 0.45, 0.75])[hood],
        "rating": rating,
        "reviews": np.floor(rng.lognormal(2.3, 1.1, n)),
    }


def _listings_truth(cols: Columns, rng: np.random.Generator, concept: float) -> np.ndarray:
    elasticity = (1 - concept) * 0.8 + concept * 1.1
    rating = np.where(np.isnan(cols["rating"]), 4.3, cols["rating"])
    log_price = (
        7.4
        + elasticity * np.log(cols["sqft"] / 800)
        + _effect(cols["neighborhood"], _lerp(_PREMIUM, _PREMIUM_SHIFTED, concept))
        + _effect(cols["property_type"], _TYPE_EFF)
        + 0.03 * cols["bedrooms"]
        + 0.04 * cols["bathrooms"]
        + 0.01 * cols["amenities"]
        + 0.06 * cols["has_parking"]
        + 0.05 * (rating - 4.3)
        + rng.normal(0.0, 0.2, len(rating))  # moderate log-normal noise
    )
    return np.round(np.exp(log_price), 2)


# ----------------------------------------------------------------------------- registry


def _synth(
    inputs: Callable[[np.random.Generator, np.ndarray, SourceConfig], Columns],
    truth: Callable[[Columns, np.random.Generator, float], np.ndarray],
) -> Clean:
    """A clean-chunk generator: inputs, then covariate drift, then the target from the truth."""

    def clean(rng: np.random.Generator, rows: np.ndarray, ds: DatasetConfig, shift: Shift):
        cols = shift(inputs(rng, rows, ds.source))  # drift before the target: P(y|x) unchanged
        cols[ds.target] = truth(cols, rng, float(ds.source.drift.concept))
        return cols

    return clean


# name -> clean generator(rng, global row indices, dataset, covariate shift) -> columns
GENERATORS: dict[str, Clean] = {
    "churn": _synth(_churn_inputs, _churn_truth),
    "listings": _synth(_listings_inputs, _listings_truth),
}


def _generator(ds: DatasetConfig) -> Clean:
    if (name := ds.source.generator or ds.name) not in GENERATORS:
        raise ValueError(f"unknown synthetic generator '{name}'; known: {', '.join(GENERATORS)}")
    return GENERATORS[name]


# ----------------------------------------------------------------------------- covariate drift


def _shift(ds: DatasetConfig, cols: Columns, rng: np.random.Generator) -> Columns:
    """Conform the inputs to their specs, then move the named input distributions."""
    cols = {k: _conform(ds.columns[k], v) if k in ds.columns else v for k, v in cols.items()}
    for name, shift in ds.source.drift.covariate.items():
        spec = ds.columns.get(name)
        kind = None if spec is None else ColumnType(spec.type)
        if name in (ds.target, ds.id_column, ds.timestamp_column) or kind in _NOT_SHIFTABLE:
            raise ValueError(f"drift.covariate: '{name}' is not a feature column of '{ds.name}'")
        if kind not in _NUMERIC and not 0 <= shift <= 1:
            raise ValueError(f"drift.covariate: share for '{name}' must be in [0, 1]")
        x = cols[name]
        if kind in _NUMERIC:
            cols[name] = _conform(spec, x + shift * np.nanstd(x))
            continue
        # categorical: move a share of the non-null rows to the least common value
        domain = list(spec.allowed) if spec.allowed else [False, True]
        rare = domain[int(np.argmin([np.sum(x == v) for v in domain]))]
        moved = (rng.random(len(x)) < shift) & ~_isnull(x)
        cols[name] = np.where(moved, np.asarray(rare, dtype=x.dtype), x)
    return cols


# ----------------------------------------------------------------------------- planting


def _rules(ds: DatasetConfig) -> list[tuple[str, str]]:
    """(column, rule) pairs that can be broken, derived from the column specs alone."""
    pairs = []
    for name, spec in ds.columns.items():
        kind = ColumnType(spec.type)
        if kind in _NUMERIC:
            pairs += [(name, r) for r in ("min", "max") if getattr(spec, r) is not None]
        if kind in _TEXT:
            pairs += [(name, r) for r in ("allowed", "regex") if getattr(spec, r)]
        pairs += [(name, "nullable")] if not spec.nullable else []
        pairs += [(name, "unique")] if spec.unique else []
    return pairs


def _bounds(ds: DatasetConfig, chunk: int) -> tuple[int, int]:
    if not 0 <= chunk < chunk_count(ds):
        raise ValueError(f"chunk {chunk} out of range [0, {chunk_count(ds)})")
    start = chunk * ds.source.chunk_rows
    return start, min(ds.source.rows, start + ds.source.chunk_rows)


def _plan(ds: DatasetConfig, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows to break, the index into `_rules` each breaks, and its donor row (-1: none)."""
    start, stop = _bounds(ds, chunk)
    n, pairs = stop - start, _rules(ds)
    k = min(n, round(ds.source.invalid_fraction * n)) if pairs else 0
    rng = np.random.default_rng([ds.source.seed, chunk, 1])
    order = rng.permutation(n)  # first k rows are planted, the next ones donate duplicates
    which = rng.integers(len(pairs), size=k) if k else np.zeros(0, np.int64)
    is_dup = np.array([r == "unique" for _, r in pairs] or [False])
    dup = np.flatnonzero(is_dup[which])
    others = np.flatnonzero(~is_dup)
    if len(dup) > n - k and len(others):  # too few clean donors left: break another rule
        which[dup[n - k :]] = others[0]
        dup = dup[: n - k]
    donor = np.full(k, -1)
    donor[dup] = order[k : k + len(dup)]  # each clean donor used once
    return order[:k], which, donor


def _bad_value(spec: ColumnSpec, rule: str, rows: np.ndarray) -> np.ndarray:
    """Values that break exactly `rule`, of the column's type (distinct per row if unique)."""
    if rule in ("allowed", "regex"):  # an unknown category / a malformed but unique id
        return np.char.mod("unknown-%d" if rule == "allowed" else "BAD-%d", rows).astype(object)
    lo, hi = spec.min, spec.max
    span = max(1.0, abs(hi - lo) if None not in (lo, hi) else abs(lo if rule == "min" else hi))
    offset = rows if spec.unique else 0
    # below min (a negative age) or absurdly above max (a 7-star rating)
    value = lo - span - offset if rule == "min" else hi + span / 2 + offset
    if ColumnType(spec.type) is ColumnType.int:
        value = np.floor(value) if rule == "min" else np.ceil(value)
    return np.broadcast_to(value, rows.shape)


def _plant(ds: DatasetConfig, cols: Columns, rows: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    """Apply the chunk's plan in place; returns planted null masks per column."""
    at, which, donor = _plan(ds, chunk)
    nulls: dict[str, np.ndarray] = {}
    for p, (name, rule) in enumerate(_rules(ds)):
        hit = which == p
        if not hit.any():
            continue
        x = cols[name]
        if rule == "nullable":
            nulls[name] = np.isin(np.arange(len(x)), at[hit])
        elif rule == "unique":
            x[at[hit]] = x[donor[hit]]  # both rows now fail "unique"
        else:
            x[at[hit]] = _bad_value(ds.columns[name], rule, rows[at[hit]])
    return nulls


def _table(ds: DatasetConfig, cols: Columns, nulls: dict[str, np.ndarray]) -> pa.Table:
    arrays = []
    for name, spec in ds.columns.items():
        mask = _isnull(cols[name]) | nulls.get(name, False)
        kind = _ARROW[ColumnType(spec.type)]
        arrays.append(pa.array(cols[name], type=kind, mask=mask if mask.any() else None))
    return pa.Table.from_arrays(arrays, names=list(ds.columns))


# ----------------------------------------------------------------------------- public API


def chunk_count(dataset: DatasetConfig) -> int:
    return math.ceil(dataset.source.rows / dataset.source.chunk_rows)


def generate_chunk(dataset: DatasetConfig, chunk: int) -> pa.Table:
    """Rows [chunk*chunk_rows, ...) of the dataset; a pure function of (dataset, chunk)."""
    clean = _generator(dataset)
    start, stop = _bounds(dataset, chunk)
    rows = np.arange(start, stop, dtype=np.int64)
    seed = dataset.source.seed
    rng, drift_rng = (np.random.default_rng([seed, chunk, s]) for s in (0, 2))
    cols = clean(rng, rows, dataset, lambda c: _shift(dataset, c, drift_rng))
    if missing := [c for c in dataset.columns if c not in cols]:
        raise ValueError(f"generator for '{dataset.name}' does not produce columns {missing}")
    cols = {name: _conform(spec, np.array(cols[name])) for name, spec in dataset.columns.items()}
    return _table(dataset, cols, _plant(dataset, cols, rows, chunk))


def generate(dataset: DatasetConfig) -> pa.Table:
    """The whole dataset in one table (small data and tests; pipelines generate chunks)."""
    return pa.concat_tables([generate_chunk(dataset, c) for c in range(chunk_count(dataset))])


def planted(dataset: DatasetConfig) -> dict[str, int]:
    """'column:rule' -> rows a correct validator finds failing it; nonzero counts only."""
    _generator(dataset)
    pairs = _rules(dataset)
    counts = np.zeros(len(pairs), np.int64)
    for chunk in range(chunk_count(dataset)):
        counts += np.bincount(_plan(dataset, chunk)[1], minlength=len(pairs))
    # a planted duplicate makes its clean donor fail too
    return {
        f"{col}:{rule}": int(k) * (2 if rule == "unique" else 1)
        for (col, rule), k in zip(pairs, counts, strict=True)
        if k
    }

"""Rules Hydra's type check cannot express: those declared beside a single field in the schema
(ranges, durations, `checked` rules), enforced by one pass over every field, and the rules
that relate several keys, which live here.

`problems(cfg)` returns every violation as (key path, message) so the user fixes them all at
once instead of one per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from typing import Any

from keel.durations import duration_seconds

from .schema import (
    ESTIMATED,
    ColumnType,
    DatasetConfig,
    FeatureSpec,
    KeelConfig,
    MonitorConfig,
    RuleAction,
    RuleSpec,
    ServedModel,
    SloConfig,
    SweepConfig,
    Task,
    TrainConfig,
    Transform,
    is_duration,
    range_of,
    rule_of,
)

Problem = tuple[str, str]

NUMERIC = {ColumnType.int, ColumnType.float, ColumnType.bool}
CATEGORICAL = {ColumnType.string, ColumnType.category, ColumnType.bool, ColumnType.int}


def problems(cfg: KeelConfig) -> list[Problem]:
    found = list(_fields(cfg, ""))
    for path, obj in _nodes(cfg, ""):
        rule = _RULES.get(type(obj))
        if rule:
            found += [(f"{path}.{key}" if key else path, msg) for key, msg in rule(obj, cfg)]
    return found


def _nodes(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, obj
    if is_dataclass(obj):
        for f in fields(obj):
            yield from _nodes(getattr(obj, f.name), _join(path, f.name))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, _join(path, str(k)))
    elif isinstance(obj, list):  # serve.models.<name>.postprocess.rules holds groups
        for i, v in enumerate(obj):
            yield from _nodes(v, f"{path}[{i}]")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fields(obj: Any, path: str) -> Iterator[Problem]:
    """The rules that sit beside a single field in the schema: ranges, durations, own rules."""
    for p, node in _nodes(obj, path):
        if not is_dataclass(node):
            continue
        for f in fields(node):
            key, value = _join(p, f.name), getattr(node, f.name)
            if value is None:
                continue
            if is_duration(f):
                try:
                    duration_seconds(value)
                except ValueError as e:
                    yield key, str(e)
            if (bounds := range_of(f)) is not None:
                # a list's range is each item's
                items = _items(key, value) if isinstance(value, list) else [(key, value)]
                for where, number in items:
                    if (msg := _outside(number, *bounds)) is not None:
                        yield where, msg
            if (rule := rule_of(f)) is not None:
                check, each = rule
                for where, item in _items(key, value) if each else [(key, value)]:
                    if (msg := check(item)) is not None:
                        yield where, msg


def _items(key: str, value: list | dict) -> list[tuple[str, Any]]:
    """Each item of a list (key[i]) or entry of a map (key.name), with its key path."""
    if isinstance(value, dict):
        return [(_join(key, str(k)), v) for k, v in value.items()]
    return [(f"{key}[{i}]", v) for i, v in enumerate(value)]


def _outside(value: float, lo: float | None, hi: float | None, lo_open: bool) -> str | None:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return f"must be {'>' if lo_open else '>='} {lo}, got {value}"
    if hi is not None and value > hi:
        return f"must be <= {hi}, got {value}"
    return None


def _dataset(ds: DatasetConfig, _: KeelConfig) -> Iterator[Problem]:
    cols = ds.columns
    for key in ("target", "id_column", "timestamp_column"):
        name = getattr(ds, key)
        if name is not None and name not in cols:
            yield key, f"'{name}' is not one of dataset.columns ({', '.join(cols)})"
    ts = ds.timestamp_column
    if ts in cols and cols[ts].type != ColumnType.timestamp:
        yield "timestamp_column", f"column '{ts}' must have type timestamp"
    for i, name in enumerate(ds.slices):
        if name not in cols:
            yield f"slices[{i}]", f"'{name}' is not one of dataset.columns"
    total = ds.split.train + ds.split.val + ds.split.test
    if abs(total - 1.0) > 1e-6:
        yield "split", f"train + val + test must sum to 1, got {total:g}"
    if ds.source.format.value != "synthetic" and not ds.source.path:
        yield "source.path", f"required for format {ds.source.format.value}"
    for name in ds.source.drift.covariate:
        if name not in cols:
            yield f"source.drift.covariate.{name}", "is not one of dataset.columns"
    for name, spec in cols.items():
        where = f"columns.{name}"
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            yield where, f"min ({spec.min:g}) is greater than max ({spec.max:g})"
        if (spec.min is not None or spec.max is not None) and spec.type not in NUMERIC:
            yield where, f"min/max need a numeric type, not {spec.type.value}"
        if spec.allowed is not None and spec.type not in (ColumnType.category, ColumnType.string):
            yield f"{where}.allowed", "needs type category or string"
        if spec.regex is not None and spec.type != ColumnType.string:
            yield f"{where}.regex", "needs type string"


# What each transform needs: (input arity, allowed input types).
_TRANSFORM_INPUTS: dict[Transform, tuple[int, set[ColumnType]]] = {
    Transform.ratio: (2, NUMERIC),
    Transform.difference: (2, NUMERIC),
    Transform.one_hot: (1, CATEGORICAL),
    Transform.ordinal: (1, CATEGORICAL),
    Transform.hashed: (1, CATEGORICAL),
    Transform.date_parts: (1, {ColumnType.timestamp}),
    Transform.group_stat: (1, NUMERIC),
}


def _feature(spec: FeatureSpec, root: KeelConfig) -> Iterator[Problem]:
    cols = root.dataset.columns
    arity, types = _TRANSFORM_INPUTS.get(spec.transform, (1, NUMERIC))
    if arity == 2:
        if not spec.inputs or len(spec.inputs) != 2:
            yield "inputs", f"{spec.transform.value} needs two input columns: inputs: [a, b]"
        names = [("inputs", n) for n in spec.inputs or []]
    else:
        if not spec.input:
            yield "input", f"{spec.transform.value} needs an input column"
        names = [("input", spec.input)] if spec.input else []
    if spec.transform == Transform.group_stat:
        names.append(("by", spec.by))
        if not spec.by:
            yield "by", "group_stat needs a grouping column"
    for key, name in names:
        if name is None:
            continue
        if name not in cols:
            yield key, f"'{name}' is not one of dataset.columns"
        elif name == root.dataset.target:
            yield key, f"'{name}' is the target: a feature computed from it leaks the label"
        elif key != "by" and cols[name].type not in types:
            kinds = ", ".join(sorted(t.value for t in types))
            got = cols[name].type.value
            yield key, f"{spec.transform.value} needs a column of type {kinds}; '{name}' is {got}"
    categorical = spec.transform in (Transform.one_hot, Transform.ordinal, Transform.hashed)
    if categorical and spec.impute.value in ("mean", "median"):
        yield (
            "impute",
            f"{spec.transform.value} inputs are categories: use most_frequent or constant",
        )
    if spec.cyclic and spec.transform != Transform.date_parts:
        yield "cyclic", "only date_parts has cycles: remove cyclic or use transform: date_parts"
    if spec.transform == Transform.date_parts and spec.impute.value != "none":
        yield "impute", "date_parts cannot impute timestamps; missing dates give the fitted mean"
    if spec.impute.value == "constant" and spec.fill_value is None:
        yield "fill_value", "impute: constant needs a fill_value"
    if spec.transform == Transform.clip:
        has_fixed = spec.lower is not None or spec.upper is not None
        has_q = spec.lower_quantile is not None or spec.upper_quantile is not None
        if has_fixed == has_q:
            yield "", "clip needs lower/upper or lower_quantile/upper_quantile (one pair)"
        if None not in (spec.lower, spec.upper) and spec.lower >= spec.upper:
            yield "lower", "must be below upper"
        if None not in (spec.lower_quantile, spec.upper_quantile) and (
            spec.lower_quantile >= spec.upper_quantile
        ):
            yield "lower_quantile", "must be below upper_quantile"
    if spec.transform == Transform.bucketize and (spec.boundaries is None) == (spec.bins is None):
        yield "", "bucketize needs boundaries or bins (one of them)"


def _train(t: TrainConfig, _: KeelConfig) -> Iterator[Problem]:
    if t.min_epochs > t.max_epochs:
        yield "min_epochs", f"({t.min_epochs}) is greater than max_epochs ({t.max_epochs})"


def _sweep(s: SweepConfig, root: KeelConfig) -> Iterator[Problem]:
    for key in s.space:
        if not _has_path(root, key):
            yield f"space.{key}", "is not a config key to search over"


def _has_path(obj: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if is_dataclass(obj) and part in {f.name for f in fields(obj)}:
            obj = getattr(obj, part)
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return False
    return True


def _served(m: ServedModel, _: KeelConfig) -> Iterator[Problem]:
    if m.canary.percent > 0 and not m.canary.version:
        yield "canary.version", "a canary with percent > 0 needs the version it sends traffic to"
    p = m.postprocess
    if p.clip_min is not None and p.clip_max is not None and p.clip_min > p.clip_max:
        yield "postprocess.clip_min", f"{p.clip_min} is above clip_max {p.clip_max}"


def _rule(r: RuleSpec, _: KeelConfig) -> Iterator[Problem]:
    given = [k for k in ("between", "below", "above") if getattr(r, k) is not None]
    if len(given) != 1:
        yield "", f"rule {r.name!r} needs exactly one of between, below, above (got {given})"
    if r.action == RuleAction.set and r.value is None:
        yield "value", f"rule {r.name!r} has action=set: give the value it sets"


def _monitor(m: MonitorConfig, root: KeelConfig) -> Iterator[Problem]:
    if unknown := sorted(set(m.columns) - set(root.dataset.columns)):
        yield "columns", f"no such columns in dataset {root.dataset.name!r}: {unknown}"


def _slo(s: SloConfig, root: KeelConfig) -> Iterator[Problem]:
    task = Task(root.dataset.task)
    for name in s.estimated_quality_floor:
        if name not in ESTIMATED[task]:
            known = ", ".join(ESTIMATED[task])
            yield f"estimated_quality_floor.{name}", f"not estimated for {task.value} ({known})"


_RULES: dict[type, Callable[[Any, KeelConfig], Iterator[Problem]]] = {
    DatasetConfig: _dataset,
    FeatureSpec: _feature,
    TrainConfig: _train,
    SweepConfig: _sweep,
    ServedModel: _served,
    RuleSpec: _rule,
    MonitorConfig: _monitor,
    SloConfig: _slo,
}

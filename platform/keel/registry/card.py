"""The model card: what a version is for, how good it is, where it is weak, and its origins.

Written with every version (bundle.File.card), from the same dicts that are stored beside it.
Every shape is read defensively (a missing key prints "n/a"), so a card can always be made.

Shapes read:
    config    the resolved config: dataset.{name, task, target, split, source}, model.name
    metrics   {"test": {m: x}, "baseline": {m: x}, "rows": {"train": n, ...},
               "slices": {column: {value: {m: x, "rows": n}}}}  (or {"column=value": {...}})
    lineage   as keel.registry.lineage.lineage() makes it (rows may also live here)
    latency   {"ms_per_row": {"1": x, "32": x, "256": x}, "device": "cpu"}
              (or batch size -> x, or batch size -> {"ms_per_row": x})
    importance  input column -> mean |attribution| (the plot of it: a file beside the card)
"""

from __future__ import annotations

from typing import Any

from keel.quality import LOWER_IS_BETTER

NA = "n/a"
GAP = 0.05  # a slice this much worse than overall is flagged (relative for error metrics)
BATCH_SIZES = (1, 32, 256)


def main_metric(metrics: dict) -> str | None:
    """The metric a version is judged by: the evaluation's primary metric when recorded."""
    metrics = _dict(metrics)
    numeric = sorted(m for m, v in _dict(metrics.get("test")).items() if _is_num(v))
    primary = metrics.get("primary_metric")
    return primary if primary in numeric else (numeric[0] if numeric else None)


def model_card(
    model: str,
    version: int,
    config: dict,
    metrics: dict,
    lineage: dict,
    latency: dict,
    importance: dict | None = None,
    plot: str | None = None,
) -> str:
    config, metrics, lineage, latency = map(_dict, (config, metrics, lineage, latency))
    task = _get(config, "dataset.task")
    main = main_metric(metrics)
    gaps = slice_gaps(metrics, main)
    sections = [
        f"# Model card: {model} v{version}",
        _intended_use(config, task),
        _training_data(config, metrics, lineage),
        _metrics(metrics),
        _slices(metrics, main, gaps),
        _importance(_dict(importance), plot),
        _latency(latency),
        _lineage(lineage),
        _limitations(config, metrics, main, gaps, latency),
    ]
    return "\n\n".join(sections) + "\n"


def _intended_use(config: dict, task: str) -> str:
    source = _dict(_get(config, "dataset.source", {}))
    origin = (
        source.get("path") or f"generator {source.get('generator') or _get(config, 'dataset.name')}"
    )
    return "\n".join(
        [
            "## Intended use",
            "",
            f"- Task: {task}",
            f"- Target: `{_get(config, 'dataset.target')}`",
            f"- Dataset: {_get(config, 'dataset.name')} ({source.get('format', NA)}: {origin})",
            f"- Model: {_get(config, 'model.name')}",
            "",
            "Scores rows shaped like the dataset's declared columns, through the feature state "
            "stored with this version. Not validated on data outside the training distribution.",
        ]
    )


def _training_data(config: dict, metrics: dict, lineage: dict) -> str:
    rows = lineage.get("rows") or metrics.get("rows")
    if isinstance(rows, dict):
        rows_text = ", ".join(f"{k} {_num(v)}" for k, v in rows.items()) or NA
    else:
        rows_text = _num(rows)
    split = _dict(_get(config, "dataset.split", {}))
    parts = [f"{k} {split[k]}" for k in ("train", "val", "test") if k in split]
    split_text = (" / ".join(parts) + f" (seed {split.get('seed', NA)})") if parts else NA
    return "\n".join(
        [
            "## Training data",
            "",
            f"- Rows: {rows_text}",
            f"- Data fingerprint: `{lineage.get('data_fingerprint', NA)}`",
            f"- Split: {split_text}",
        ]
    )


def _metrics(metrics: dict) -> str:
    test, base = _dict(metrics.get("test")), _dict(metrics.get("baseline"))
    lines = ["## Metrics (test split)", ""]
    if not test:
        return "\n".join([*lines, NA])
    lines += ["| metric | model | trivial baseline | beats baseline |", "|---|---|---|---|"]
    for name, value in test.items():
        if isinstance(value, dict | list):
            continue  # curves and matrices belong in the report, not the card's table
        b = base.get(name)
        beats = NA
        if _is_num(value) and _is_num(b):
            beats = "yes" if _better(name, value, b) else "no"
        lines.append(f"| {name} | {_num(value)} | {_num(b)} | {beats} |")
    return "\n".join(lines)


def slices(metrics: dict) -> list[tuple[str, dict]]:
    """(label, metrics) per slice, from {column: {value: {...}}} or {"column=value": {...}}."""
    raw = _dict(_dict(metrics).get("slices"))
    out = []
    for key, inner in raw.items():
        inner = _dict(inner)
        if inner and all(isinstance(v, dict) for v in inner.values()):
            out += [(f"{key}={value}", m) for value, m in inner.items()]
        elif inner:
            out.append((str(key), inner))
    return out


def slice_gaps(metrics: dict, main: str | None) -> dict[str, float]:
    """Slices whose main metric is worse than overall by more than GAP -> how much worse."""
    overall = _dict(_dict(metrics).get("test")).get(main)
    if main is None or not _is_num(overall):
        return {}
    gaps = {}
    for label, m in slices(metrics):
        value = m.get(main)
        if _is_num(value) and _shortfall(main, value, overall) > GAP:
            gaps[label] = value
    return gaps


def _shortfall(name: str, value: float, overall: float) -> float:
    # Error metrics have the data's scale (rmse 120.0): compare them relatively.
    if name in LOWER_IS_BETTER:
        return (value - overall) / abs(overall) if overall else value - overall
    return overall - value


def _slices(metrics: dict, main: str | None, gaps: dict[str, float]) -> str:
    found = slices(metrics)
    lines = [f"## Slices ({main or NA})", ""]
    if not found or main is None:
        return "\n".join([*lines, NA])
    overall = _dict(metrics.get("test")).get(main)
    lines += [f"| slice | rows | {main} | vs overall | flag |", "|---|---|---|---|---|"]
    for label, m in found:
        value = m.get(main)
        diff = f"{value - overall:+.4f}" if _is_num(value) and _is_num(overall) else NA
        rows = m.get("rows", m.get("n", m.get("count")))
        flag = "gap" if label in gaps else ""
        lines.append(f"| {label} | {_num(rows)} | {_num(value)} | {diff} | {flag} |")
    return "\n".join(lines)


def _importance(importance: dict, plot: str | None) -> str:
    lines = ["## What drives the predictions", ""]
    if not importance:
        return "\n".join([*lines, NA])
    total = sum(abs(v) for v in importance.values()) or 1.0
    lines += [
        "Each input column's mean |attribution| over a sample of the training rows (explained "
        "as the `:explain` endpoint explains a request), and its share of the total.",
        "",
        *([f"![global importance]({plot})", ""] if plot else []),
        "| input column | mean abs attribution | share |",
        "|---|---|---|",
    ]
    for column, value in sorted(importance.items(), key=lambda kv: -abs(kv[1])):
        lines.append(f"| {column} | {_num(value, '.4g')} | {abs(value) / total:.0%} |")
    return "\n".join(lines)


def latency_ms(latency: dict) -> dict[int, float]:
    """Batch size -> ms per row (the latency profile: {"ms_per_row": {"1": x, ...}, ...})."""
    rows = _dict(latency.get("ms_per_row"))
    return {int(k): float(v) for k, v in rows.items() if str(k).isdigit() and _is_num(v)}


def _latency(latency: dict) -> str:
    ms = latency_ms(latency)
    lines = ["## Latency profile", "", f"Device: {latency.get('device', NA)}", ""]
    lines += ["| batch size | ms per row |", "|---|---|"]
    for size in sorted(set(BATCH_SIZES) | set(ms)):
        lines.append(f"| {size} | {_num(ms.get(size), '.4f')} |")
    return "\n".join(lines)


def _lineage(lineage: dict) -> str:
    packages = _dict(lineage.get("packages"))
    pk = ", ".join(f"{k} {v}" for k, v in packages.items() if v) or NA
    parent = lineage.get("parent")
    return "\n".join(
        [
            "## Lineage",
            "",
            f"- Config hash: `{lineage.get('config_hash', NA)}`",
            f"- Git commit: `{lineage.get('git_commit') or NA}`",
            f"- Seed: {lineage.get('seed', NA)}",
            f"- Parent version: {f'v{parent}' if parent is not None else 'none'}",
            f"- Python: {lineage.get('python', NA)} on {lineage.get('hostname', NA)}",
            f"- Packages: {pk}",
            f"- Created: {lineage.get('created_at', NA)}",
        ]
    )


def _limitations(
    config: dict, metrics: dict, main: str | None, gaps: dict[str, float], latency: dict
) -> str:
    notes = [
        "Metrics come from one held-out test split of the training data; they say nothing "
        "about data that drifts away from it (watch it with `keel monitor`)."
    ]
    if _get(config, "dataset.source.format") == "synthetic":
        notes.append("Trained and evaluated on synthetic data: not evidence of real-world quality.")
    test, base = _dict(metrics.get("test")), _dict(metrics.get("baseline"))
    worse = [
        m
        for m, v in test.items()
        if _is_num(v) and _is_num(base.get(m)) and not _better(m, v, base[m])
    ]
    if worse:
        notes.append(f"Does not beat the trivial baseline on: {', '.join(worse)}.")
    overall = test.get(main)
    for label, value in gaps.items():
        notes.append(f"Weaker on slice {label}: {main} {_num(value)} vs {_num(overall)} overall.")
    if not latency_ms(latency):
        notes.append("No latency profile was measured for this version.")
    return "\n".join(["## Limitations", "", *(f"- {n}" for n in notes)])


# --------------------------------------------------------------------------- helpers


def _better(name: str, value: float, baseline: float) -> bool:
    return value < baseline if name in LOWER_IS_BETTER else value > baseline


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x


def _num(x: Any, spec: str = "") -> str:
    if isinstance(x, bool) or x is None:
        return NA
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return format(x, spec or ".4f") if x == x else "NaN"
    return str(x)


def _dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _get(d: dict, dotted: str, default: Any = NA) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d if d is not None else default

"""report.html of `keel monitor`: the drift verdict per column with its statistics and a
histogram of both sides, as one static page (inline SVG, no scripts, nothing fetched), so it
opens anywhere, from any store, and renders in milliseconds. Every value from the data is
escaped: column names and categories may hold any text."""

from __future__ import annotations

from html import escape

from .drift import NUMERICAL, PREDICTION, ColumnDrift, DriftResult
from .summary import Column, Side

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}.drift{color:#b00020;font-weight:600}.ok{color:#1b5e20}
.muted{color:#666}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""
_REF, _CUR = "#7a8fa6", "#e07b39"  # reference, current
_W, _H = 360, 90  # histogram size in px


def render(title: str, drift: DriftResult, summaries: dict[str, Column], drift_share: float) -> str:
    checked = len(drift.columns)
    drifted = [c for c, r in drift.columns.items() if r.drifted]
    verdict = (
        f'<p class="{"drift" if drift.share > drift_share else "ok"}">{len(drifted)} of '
        f"{checked} columns drifted ({drift.share:.0%}; the dataset drifts above "
        f"{drift_share:.0%})" + (f": {escape(', '.join(drifted))}" if drifted else "") + "</p>"
    )
    rows = [
        _row(name, result, summaries.get(name))
        for name, result in [*drift.columns.items(), (PREDICTION, drift.prediction)]
        if result is not None
    ]
    skipped = sorted(set(summaries) - set(drift.columns) - {PREDICTION})
    note = (
        f'<p class="muted">Not compared (all null on one side): {escape(", ".join(skipped))}</p>'
        if skipped
        else ""
    )
    legend = (
        f'<p class="legend">histograms: share of rows per bin, <span style="background:{_REF}">'
        f'</span>reference <span style="background:{_CUR}"></span>window</p>'
    )
    head = "<tr><th>column</th><th>drift</th><th>reference</th><th>window</th><th></th></tr>"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{verdict}{legend}"
        f"<table>{head}{''.join(rows)}</table>{note}</body></html>"
    )


def _row(name: str, result: ColumnDrift, column: Column | None) -> str:
    word = "drifted" if result.drifted else "no drift"
    test = (
        f'<span class="{"drift" if result.drifted else "ok"}">{word}</span><br>'
        f"{escape(result.method)} {result.score:.4g}<br>"
        f'<span class="muted">threshold {result.threshold:.4g}</span>'
    )
    if column is None:
        return f"<tr><td>{escape(name)}</td><td>{test}</td><td></td><td></td><td></td></tr>"
    return (
        f"<tr><td><b>{escape(name)}</b></td><td>{test}</td>"
        f"<td>{_stats(column.reference, column.kind)}</td>"
        f"<td>{_stats(column.current, column.kind)}</td><td>{_histogram(column)}</td></tr>"
    )


def _stats(side: Side, kind: str) -> str:
    lines = [f"{side.count:,} values, {side.missing:.1%} missing"]
    if kind == NUMERICAL and side.mean is not None:
        lines += [
            f"mean {side.mean:.4g}, std {side.std:.4g}",
            f"min {side.min:.4g}, median {side.p50:.4g}, max {side.max:.4g}",
        ]
    elif side.unique is not None:
        lines.append(f"{side.unique:,} distinct; top {escape(str(side.top))}")
    return "<br>".join(lines)


def _histogram(column: Column) -> str:
    n = len(column.bins)
    if not n:
        return ""
    peak = max([*column.reference_share, *column.current_share, 1e-12])
    width = _W / n
    bars = []
    for i, label in enumerate(column.bins):
        for j, (share, color) in enumerate(
            ((column.reference_share[i], _REF), (column.current_share[i], _CUR))
        ):
            h = _H * share / peak
            bars.append(
                f'<rect x="{i * width + j * width / 2:.1f}" y="{_H - h:.1f}" '
                f'width="{width / 2 - 0.5:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(label)}: {share:.1%}</title></rect>"
            )
    return f'<svg width="{_W}" height="{_H}" role="img">{"".join(bars)}</svg>'

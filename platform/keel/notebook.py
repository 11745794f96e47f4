"""Display helpers for the notebooks: keel's readable summaries as tables, saved HTML reports
inline. Only notebooks import this module (it needs IPython)."""

from __future__ import annotations

import html

import pandas as pd
from IPython.display import HTML

from keel import storage
from keel.app import Summary


def table(rows: Summary | list[tuple[str, str]]) -> pd.DataFrame:
    """A job summary, or the (what, value) rows a `describe` function gives, as a table."""
    rows = rows.rows if isinstance(rows, Summary) else rows
    return pd.DataFrame(rows, columns=["what", "value"]).set_index("what")


def report(path: str, height: int = 800) -> HTML:
    """A saved HTML report (Evidently's report.html from `keel monitor`) shown inline: the
    page in a sandboxed frame, so its scripts and styles stay out of the notebook's."""
    page = html.escape(storage.read_text(path), quote=True)
    return HTML(
        f'<div><iframe srcdoc="{page}" sandbox="allow-scripts" '
        f'style="width: 100%; height: {height}px; border: 0"></iframe></div>'
    )

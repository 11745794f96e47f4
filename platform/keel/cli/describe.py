"""Print the keys of a config group: type, default, allowed range and description.

    keel describe               every group, and the keys outside them
    keel describe GROUP ...     e.g. train, serve.batching, dataset.split, monitor.retrain

The reference is read from the schema (keel/config/schema.py), so its defaults are the schema's;
a group's YAML in conf/ may set others (`keel config` prints the composed values). A key of type
group is a group of its own: `keel describe` it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from keel.app import command_line, console
from keel.config.reference import Key, find, keys, overview
from keel.errors import KeelError

GROUPS = (  # the config groups it describes
    "dataset features model train sweep slo serve monitor simulate tracking paths ray bench"
)
WORDS = "[GROUP ...]"  # no overrides: the reference is the schema's

# heading -> column options: the key and range whole, the description the width left over
COLUMNS = {
    "key": {"no_wrap": True},
    "type": {"max_width": 22},
    "default": {"max_width": 16},
    "range": {"no_wrap": True},
    "description": {"ratio": 1},
}


def table(title: str, rows: list[Key]) -> Table:
    """One row per key; Text throughout, as names and defaults hold brackets ([i], [64, 32])."""
    out = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD)
    for heading, options in COLUMNS.items():
        out.add_column(heading, overflow="fold", **options)
    for key in rows:
        out.add_row(*(Text(part) for part in (key.name, key.type, key.default, key.range, key.doc)))
    return out


def tables(names: Sequence[str]) -> list[Table]:
    """The overview without names, else a table per named group; an unknown name is a
    ConfigError listing the groups."""
    if not names:
        return [table("config groups (keel describe GROUP lists a group's keys)", overview())]
    return [table(f"{g.name}: {g.key.doc}", keys(g)) for g in map(find, names)]


def main(argv: Sequence[str] | None = None) -> None:
    try:
        found = tables(command_line(__name__, argv)[1])
    except KeelError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)
    for one in found:
        console.print(one)


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main()


if __name__ == "__main__":
    command()

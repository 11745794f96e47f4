"""How every job runs: compose the config from command-line overrides, run, print a summary.

`jobs/X.py` is `app.main(X)`; `keel X ...` runs that same file. Errors keel understands print
as one clear message (exit 2 for config errors, 1 otherwise); anything else keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from keel.config import KeelConfig, load
from keel.errors import KeelError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@dataclass
class Summary:
    """What a job did and where it wrote it: the last thing a user sees."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    exit_code: int = 0  # nonzero: the job ran but its result fails (a failing monitor verdict)

    def add(self, what: str, value: object) -> Summary:
        self.rows.append((what, str(value)))
        return self

    def show(self) -> None:
        console.print(f"[bold]{self.title}[/]")
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for what, value in self.rows:  # Text: "[churn] rows" is a label, not rich markup
            table.add_row(Text(what), Text(value))
        console.print(table)


VERBOSE = "--verbose"


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("keel").setLevel(logging.INFO)


def split_flags(argv: Sequence[str], known: dict[str, type]) -> tuple[dict, list[str]]:
    """Pull a job's own `--flag [value]` options out of argv; the rest are Hydra overrides.

    `known` maps each flag to its type (bool: takes no value). An unknown `--flag` is an error
    that lists the known ones."""
    flags: dict = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        name, _, value = arg.partition("=")
        if name not in known:
            _refuse(f"unknown option {name}; known: {', '.join(known)}")
        kind = known[name]
        if kind is bool:
            if value:
                _refuse(f"{name} takes no value (got {value!r})")
            flags[name] = True
            continue
        value = value or next(args, "")
        try:
            if not value or value.startswith("--"):
                raise ValueError
            flags[name] = kind(value)
        except ValueError:
            _refuse(f"{name} needs a {kind.__name__} value, got {value!r}")
    return flags, rest


def _refuse(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    sys.exit(2)


def main(job: Callable[[KeelConfig], Summary | None], argv: Sequence[str] | None = None) -> None:
    """Entry point of a job: `python jobs/train.py experiment=churn train.epochs=3`."""
    setup_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    if VERBOSE in args:  # every job's flag: Ray's own output on the console too
        args = [a for a in args if a != VERBOSE] + ["ray.verbose=true"]
        if argv is None:  # jobs that re-read their overrides (keel pipeline) see the same
            sys.argv = [sys.argv[0], *args]
    try:
        summary = job(load(args))
    except KeelError as e:
        console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
        sys.exit(e.exit_code)
    if summary is not None:
        summary.show()
        if summary.exit_code:
            sys.exit(summary.exit_code)

"""How every job runs: read its command line, compose the config from the overrides, run,
print a summary.

A job is a module (keel/cli/X.py, or a project's jobs/X.py) whose docstring, GROUPS, FLAGS,
ACTIONS and WORDS declare its purpose and arguments; `command_line` reads them, so `keel X`,
`python jobs/X.py` and `python -m keel.cli.X` take the same arguments and print the same help.
Errors keel understands print as one clear message (exit 2 for config and usage errors, 1
otherwise); anything else keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from keel.config import KeelConfig, conf_dir, load
from keel.config.compose import CONFIG_DIR
from keel.errors import KeelError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, highlight=False, soft_wrap=True)  # usage errors: whole lines


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


@dataclass(frozen=True)
class Flag:
    """One `--flag` of a job: what it parses to (bool: takes no value) and its line of help."""

    kind: type
    help: str
    metavar: str = ""  # the value's name in the usage (`--address URL`); none for a bool
    required: bool = False  # shown without brackets; the job checks it (it prints its usage)

    def usage(self, name: str) -> str:
        text = f"{name} {self.metavar}" if self.kind is not bool else name
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class Action:
    """A job's action, its first word (`keel registry promote MODEL VERSION`): what it does, its
    words (`[NAME]` is optional) and the flags only it takes."""

    help: str
    words: str = ""
    flags: dict[str, Flag] = field(default_factory=dict)

    def needs(self) -> tuple[list[str], list[str]]:
        """The required words and the optional ones."""
        names = self.words.split()
        return [w for w in names if not w.startswith("[")], [w for w in names if w.startswith("[")]


HELP = ("-h", "--help")
CONFIG_FLAG = "--config-dir"
VERBOSE = "--verbose"
COMMON = {  # every job's flags, before its own
    "--help": Flag(bool, "this help (or -h)"),
    CONFIG_FLAG: Flag(str, f"the config tree to use instead of conf/ (or {CONFIG_DIR}=DIR)", "DIR"),
    VERBOSE: Flag(bool, "Ray's own output on the console too (ray.verbose=true)"),
}
OVERRIDES = "[key=value ...]"  # the words of a job that declares none: Hydra overrides


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("keel").setLevel(logging.INFO)


def words_and_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """A job's words (a FILE, a MODEL) apart from its Hydra overrides (`key=value`,
    `+key=value`; `~key` deletes one), each in order."""
    overrides = [a for a in args if "=" in a or a.startswith("~")]
    return [a for a in args if a not in overrides], overrides


def split_flags(argv: Sequence[str], known: dict[str, Flag]) -> tuple[dict, list[str]]:
    """Pull a job's own `--flag [value]` options out of argv; the rest are words and overrides.

    An unknown `--flag` is an error that lists the known ones."""
    flags: dict = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        name, _, value = arg.partition("=")
        if name not in known:  # argparse's words, which scripts around keel may match
            refuse(f"unrecognized arguments: {name}; known: {', '.join(known)}")
        kind = known[name].kind
        if kind is bool:
            if value:
                refuse(f"{name} takes no value (got {value!r})")
            flags[name] = True
            continue
        value = value or next(args, "")
        try:
            if not value or value.startswith("--"):
                raise ValueError
            flags[name] = kind(value)
        except ValueError:
            refuse(f"{name} needs a {kind.__name__} value, got {value!r}")
    return flags, rest


def refuse(message: str) -> NoReturn:
    """A command line keel cannot run: the message on stderr, exit 2 (as argparse does)."""
    errors.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(2)


def config_dir(argv: Sequence[str]) -> list[str]:
    """Take every `--config-dir DIR` (or `--config-dir=DIR`) out of the arguments into
    KEEL_CONFIG_DIR, which this process, its jobs' Ray workers and subprocesses all read."""
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg.partition("=")[0] != CONFIG_FLAG:
            rest.append(arg)
            continue
        value = arg.partition("=")[2] or next(args, "")
        if not value:
            refuse(f"{CONFIG_FLAG} needs a directory")
        where = Path(value).expanduser().resolve()
        if not where.is_dir():
            refuse(f"{CONFIG_FLAG} {value}: no such directory")
        os.environ[CONFIG_DIR] = str(where)
    return rest


def command_line(module: str, argv: Sequence[str] | None = None) -> tuple[dict, list[str]]:
    """The flags and the other arguments of the job in `module` (sys.argv[1:] unless given),
    read as the module declares them: FLAGS (name -> Flag), ACTIONS (name -> Action), WORDS.

    Every job's flags are taken here, whichever way it was started (`keel JOB`,
    `python jobs/JOB.py`, `python -m keel.cli.JOB`): --help prints the job's help and exits 0,
    --config-dir DIR names the config tree, --verbose becomes the override ray.verbose=true."""
    job = sys.modules[module]
    args = config_dir(sys.argv[1:] if argv is None else argv)  # first: the help names the tree
    if any(arg in HELP for arg in args):  # before any flag of the job's is checked
        print(job_help(job))
        sys.exit(0)
    actions: dict[str, Action] = getattr(job, "ACTIONS", {})
    own = {name: flag for action in actions.values() for name, flag in action.flags.items()}
    flags, rest = split_flags(args, {**COMMON, **getattr(job, "FLAGS", {}), **own})
    if flags.pop(VERBOSE, False):
        rest.append("ray.verbose=true")
    if actions:
        _check_action(job, flags, words_and_overrides(rest)[0])
    return flags, rest


def _check_action(job: ModuleType, flags: dict, words: list[str]) -> None:
    """The first word names an action, which takes the flags given and as many words."""
    actions: dict[str, Action] = job.ACTIONS
    prog = f"keel {_name(job)}"
    if not words or words[0] not in actions:
        got = f"got {words[0]!r}" if words else "got none"
        refuse(f"{prog} needs an action first ({got}): {', '.join(actions)}")
    name, action = words[0], actions[words[0]]
    usage = f"usage: {_action_usage(_name(job), name, action)}"
    shared = getattr(job, "FLAGS", {})
    if stray := [flag for flag in flags if flag not in action.flags and flag not in shared]:
        refuse(f"unrecognized arguments: {' '.join(stray)}; {usage}")
    required, optional = action.needs()
    given = words[1:]
    if len(given) < len(required):
        refuse(f"{prog} {name} needs {' '.join(required[len(given) :])}; {usage}")
    if len(given) > len(required) + len(optional):
        extra = given[len(required) + len(optional) :]
        refuse(f"unrecognized arguments: {' '.join(extra)}; {usage}")


def _name(job: ModuleType) -> str:
    """The job's name: its module's (`python -m keel.cli.train`), else its script's."""
    spec = getattr(job, "__spec__", None)
    dotted = spec.name.removesuffix(".__main__") if spec else Path(job.__file__).stem
    return dotted.rsplit(".", 1)[-1]


def usage(job: ModuleType) -> str:
    """The job's usage line: its words (WORDS, or an action), then its own flags."""
    words = "ACTION ..." if getattr(job, "ACTIONS", {}) else getattr(job, "WORDS", OVERRIDES)
    flags = [flag.usage(name) for name, flag in getattr(job, "FLAGS", {}).items()]
    return " ".join(part for part in ["usage:", f"keel {_name(job)}", words, *flags] if part)


def _action_usage(job: str, name: str, action: Action) -> str:
    parts = [f"keel {job} {name}", action.words, *(f.usage(n) for n, f in action.flags.items())]
    return " ".join(p for p in parts if p)


def _flag_lines(flags: dict[str, Flag], indent: str = "  ") -> list[str]:
    named = {f"{n} {f.metavar}" if f.kind is not bool else n: f.help for n, f in flags.items()}
    width = max(map(len, named), default=0)
    return [f"{indent}{name:<{width}}  {text}" for name, text in named.items()]


def job_help(job: ModuleType) -> str:
    """A job's purpose and usage (its docstring), its flags and actions, the config groups it
    reads (GROUPS) and those there are, and the flags every job takes."""
    name = _name(job)
    own: dict[str, Flag] = getattr(job, "FLAGS", {})
    actions: dict[str, Action] = getattr(job, "ACTIONS", {})
    doc = (job.__doc__ or "").strip()
    lines = [f"keel {name}: {doc}" if doc else f"keel {name}", "", usage(job)]
    if actions:
        lines += ["", "actions:"]
        for action, spec in actions.items():
            lines += [f"  {_action_usage(name, action, spec)}", f"      {spec.help}"]
            lines += _flag_lines(spec.flags, indent="      ")
    if own:
        lines += ["", "flags:", *_flag_lines(own)]
    groups = getattr(job, "GROUPS", "")
    conf = conf_dir()
    there = sorted(p.name for p in conf.iterdir() if p.is_dir()) if conf.is_dir() else []
    return "\n".join(
        [
            *lines,
            "",
            f"It reads the config groups: {', '.join(str(groups).split()) or 'not declared'}",
            f"Every job takes Hydra overrides (key=value, group=option) on the config in {conf}",
            f"  config groups: {', '.join(there) or 'none (no config tree there)'}",
            *_flag_lines(COMMON),
            "  keel config [overrides] prints the composed config; keel describe GROUP, its keys",
        ]
    )


def main(job: Callable[[KeelConfig], Summary | None], argv: Sequence[str] | None = None) -> None:
    """Entry point of a job: `python jobs/train.py experiment=churn train.epochs=3`.

    `argv`: the overrides; without them, this process's command line as the job's module
    declares it (`command_line`), so a job with no flags of its own need not read it."""
    args = list(command_line(job.__module__)[1] if argv is None else argv)
    setup_logging()
    root = "(not composed)"
    try:
        cfg = load(args)
        root = cfg.paths.root
        summary = job(cfg)
    except KeelError as e:
        console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
        sys.exit(e.exit_code)
    except OSError as e:
        # a disk or an object store failing (pyarrow's S3 errors name the bucket, the key and
        # why): one line and where outputs go, not a traceback (--verbose logs it)
        logging.getLogger(job.__module__).debug("I/O failure", exc_info=True)
        console.print(
            f"[bold red]error:[/] {e} (an I/O error; this run's outputs go under "
            f"paths.root={root})",
            markup=True,
            highlight=False,
        )
        sys.exit(1)
    if summary is not None:
        summary.show()
        if summary.exit_code:
            sys.exit(summary.exit_code)

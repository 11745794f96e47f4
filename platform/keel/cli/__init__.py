"""The `keel` command: `keel [--config-dir DIR] JOB [args...]` runs the job keel/cli/JOB.py.

Each job is a module of this package with a `command()` that reads its arguments from
sys.argv; jobs/JOB.py in the checkout is a thin script calling the same function, so
`python jobs/train.py ...` and `python -m keel.cli.train ...` do what `keel train ...` does.
A project may add jobs of its own as jobs/NAME.py; a packaged job of the same name wins.
"""

from __future__ import annotations

import ast
import importlib
import os
import runpy
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from keel.config import conf_dir, project_root
from keel.config.compose import CONFIG_DIR
from keel.submission import SubmitError

PACKAGED = Path(__file__).parent
HELP = ("-h", "--help")
CONFIG_FLAG = "--config-dir"
NOT_JOBS = ("submit", "jobs")  # client-side commands, not jobs a cluster runs


def jobs_dir() -> Path:
    """A project's own jobs (scripts run as they are)."""
    return project_root() / "jobs"


def scripts() -> dict[str, Path]:
    """Job name -> the file that holds it: packaged modules first, then the project's own."""
    found = {p.stem: p for p in sorted(jobs_dir().glob("*.py"))}
    found.update({p.stem: p for p in sorted(PACKAGED.glob("*.py")) if p.stem != "__init__"})
    return dict(sorted(found.items()))


def entrypoint(job: str, overrides: Sequence[str], python: str = "python") -> str:
    """The command the cluster runs: a packaged job as a module of the shipped keel package,
    a project's own job as its script in the working_dir."""
    script = scripts().get(job)
    if job in NOT_JOBS or script is None:
        known = ", ".join(j for j in scripts() if j not in NOT_JOBS)
        raise SubmitError(f"unknown job '{job}'; jobs: {known}")
    if script.parent == PACKAGED:
        return shlex.join([python, "-m", f"keel.cli.{job}", *overrides])
    return shlex.join([python, f"jobs/{job}.py", *overrides])


def available() -> dict[str, str]:
    """Job name -> the first line of its docstring."""
    return {name: _doc(path).split("\n")[0] for name, path in scripts().items()}


def _doc(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def reads(path: Path) -> tuple[str, ...] | None:
    """The config groups a job declares it reads (its module's GROUPS, names separated by
    spaces), read without importing it; None for a job that declares none (a project's own
    script)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "GROUPS"
        ]:
            return tuple(str(ast.literal_eval(node.value)).split())
    return None


def usage() -> str:
    lines = ["usage: keel [--config-dir DIR] JOB [key=value ...]", "", "jobs:"]
    lines += [f"  {name:<12} {doc}" for name, doc in available().items()]
    lines += [
        "",
        "Overrides use Hydra's syntax, e.g. keel validate experiment=listings",
        f"--config-dir DIR (or {CONFIG_DIR}=DIR): the config tree to use instead of conf/",
    ]
    return "\n".join(lines)


def job_help(name: str, script: Path) -> str:
    """A job's purpose and usage (its docstring), the flags every job takes, the config groups."""
    doc = _doc(script)
    conf = conf_dir()
    groups = sorted(p.name for p in conf.iterdir() if p.is_dir()) if conf.is_dir() else []
    its = reads(script)
    return "\n".join(
        [
            f"keel {name}: {doc}" if doc else f"usage: keel {name} [key=value ...]",
            "",
            f"It reads the config groups: {', '.join(its) if its else 'not declared'}",
            f"Every job takes Hydra overrides (key=value, group=option) on the config in {conf}",
            f"  config groups: {', '.join(groups) or 'none (no config tree there)'}",
            "  --verbose      Ray's own output on the console too",
            f"  --config-dir DIR (before the job's name, or {CONFIG_DIR}=DIR): another config tree",
            "  keel config [overrides]  prints the composed config; keel describe GROUP, its keys",
        ]
    )


def config_dir(args: list[str]) -> list[str]:
    """Take `--config-dir DIR` (or `--config-dir=DIR`) off the front of the arguments into
    KEEL_CONFIG_DIR, which this process, its jobs' Ray workers and subprocesses all read."""
    while args and args[0].split("=")[0] == CONFIG_FLAG:
        value = args[0].partition("=")[2]
        if not value:
            if len(args) < 2:
                _exit(f"{CONFIG_FLAG} needs a directory")
            value, args = args[1], args[1:]
        where = Path(value).expanduser().resolve()
        if not where.is_dir():
            _exit(f"{CONFIG_FLAG} {value}: no such directory")
        os.environ[CONFIG_DIR] = str(where)
        args = args[1:]
    return args


def _exit(message: str) -> None:
    print(f"keel: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = config_dir(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in (*HELP, "help"):
        print(usage())
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    script = scripts().get(name)
    if script is None:
        print(f"keel: unknown job '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if any(arg in HELP for arg in rest):  # before the job parses its own flags
        print(job_help(name, script))
        sys.exit(0)
    sys.argv = [f"keel {name}", *rest]
    if script.parent == PACKAGED:
        importlib.import_module(f"keel.cli.{name}").command()
    else:
        runpy.run_path(str(script), run_name="__main__")

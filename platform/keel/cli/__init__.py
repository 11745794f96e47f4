"""The `keel` command: `keel [--config-dir DIR] JOB [args...]` runs the job keel/cli/JOB.py.

Each job is a module of this package with a `command()` that reads its arguments from
sys.argv (through keel.app.command_line, which answers --help); jobs/JOB.py in the checkout is
a thin script calling the same function, so `python jobs/train.py ...` and
`python -m keel.cli.train ...` do what `keel train ...` does.
A project may add jobs of its own as jobs/NAME.py; a packaged job of the same name wins.
"""

from __future__ import annotations

import ast
import importlib
import runpy
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from keel.app import HELP, config_dir, refuse
from keel.config import project_root
from keel.config.compose import CONFIG_DIR
from keel.submission import SubmitError

PACKAGED = Path(__file__).parent
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


def usage() -> str:
    lines = ["usage: keel [--config-dir DIR] JOB [key=value ...]", "", "jobs:"]
    lines += [f"  {name:<12} {doc}" for name, doc in available().items()]
    lines += [
        "",
        "Overrides use Hydra's syntax, e.g. keel validate experiment=listings",
        f"--config-dir DIR (or {CONFIG_DIR}=DIR): the config tree to use instead of conf/",
        "keel JOB --help: the job's purpose, its flags and the config groups it reads",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = config_dir(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in (*HELP, "help"):
        print(usage())
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    script = scripts().get(name)
    if script is None:
        refuse(f"unknown job '{name}'\n\n{usage()}")
    # the job reads its own arguments, --help among them, as it does started as a script
    sys.argv = [f"keel {name}", *rest]
    if script.parent == PACKAGED:
        importlib.import_module(f"keel.cli.{name}").command()
    else:
        runpy.run_path(str(script), run_name="__main__")

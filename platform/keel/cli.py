"""The `keel` command: `keel JOB [overrides...]` runs jobs/JOB.py, the job's one entry point."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

from keel.config import conf_dir, project_root


def jobs_dir() -> Path:
    return project_root() / "jobs"


def available() -> dict[str, str]:
    """Job name -> the first line of its docstring."""
    out = {}
    for path in sorted(jobs_dir().glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem] = doc.splitlines()[0] if doc else ""
    return out


def usage() -> str:
    lines = ["usage: keel JOB [key=value ...]", "", "jobs:"]
    lines += [f"  {name:<12} {doc}" for name, doc in available().items()]
    lines += ["", "Overrides use Hydra's syntax, e.g. keel validate experiment=listings"]
    return "\n".join(lines)


HELP = ("-h", "--help")


def job_help(name: str, script: Path) -> str:
    """A job's purpose and usage (its docstring), the flags every job takes, the config groups."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    groups = sorted(p.name for p in conf_dir().iterdir() if p.is_dir())
    return "\n".join(
        [
            f"keel {name}: {doc}" if doc else f"usage: keel {name} [key=value ...]",
            "",
            "Every job takes Hydra overrides (key=value, group=option) on the config in "
            f"{conf_dir()}",
            f"  config groups: {', '.join(groups)}",
            "  --verbose      Ray's own output on the console too",
            "  keel config [overrides]  prints the composed config; README.md describes each key",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in (*HELP, "help"):
        print(usage())
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    script = jobs_dir() / f"{name}.py"
    if not script.is_file():
        print(f"keel: unknown job '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if any(arg in HELP for arg in rest):  # before the job parses its own flags
        print(job_help(name, script))
        sys.exit(0)
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")

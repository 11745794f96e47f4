"""The `keel` command: `keel JOB [overrides...]` runs jobs/JOB.py, the job's one entry point."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

from keel.config import project_root


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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    script = jobs_dir() / f"{name}.py"
    if not script.is_file():
        print(f"keel: unknown job '{name}'\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")

"""Facts flow down (docs/architecture.md): a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "keel"
BENCH = "benchmarks"  # the repository's benchmark harness, above the package
HIGHER = {"training", "serving", "monitoring", "pipeline", "traffic", "submission"}
LOWER = ["config", "errors", "storage", "durations", "runtime", "quality", "targets",
         "prediction_log", "data", "features", "models", "registry"]  # fmt: skip


def imports(path: Path) -> set[str]:
    """The absolute module names a file imports (and `module.name` of a from-import), at any
    depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def keel_imports(path: Path) -> set[str]:
    """The keel subpackages or modules a file imports."""
    return {n.split(".")[1] for n in imports(path) if n.startswith("keel.")}


def files_of(part: str) -> list[Path]:
    single = PACKAGE / f"{part}.py"
    return [single] if single.is_file() else sorted((PACKAGE / part).rglob("*.py"))


@pytest.mark.parametrize("part", LOWER)
def test_a_lower_layer_imports_nothing_above_it(part):
    files = files_of(part)
    assert files, part
    upward = {
        f"{path.relative_to(PACKAGE)} -> {name}"
        for path in files
        for name in keel_imports(path) & HIGHER
    }
    assert not upward, sorted(upward)


def test_the_package_never_imports_the_benchmarks():
    """benchmarks/ sits beside keel, outside the installed package: a replica never ships it."""
    found = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(n.split(".")[0] == BENCH for n in imports(path))
    }
    assert not found, sorted(found)


def test_the_check_sees_an_upward_import(tmp_path):
    planted = tmp_path / "x.py"
    planted.write_text("def f():\n    from keel.training.metrics import class_index\n")
    assert keel_imports(planted) == {"training"}


def test_the_routes_do_not_import_the_ingress():
    """serving/api.py builds the app from a Protocol; ingress.py imports it, not the reverse."""
    tree = ast.parse((PACKAGE / "serving" / "api.py").read_text())
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    }
    assert "ingress" not in imported

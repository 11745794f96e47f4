"""Facts flow down (docs/architecture.md): a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "keel"
HIGHER = {"training", "serving", "monitoring", "pipeline", "traffic", "submission", "bench"}
LOWER = ["config", "errors", "storage", "durations", "runtime", "quality", "targets",
         "prediction_log", "data", "features", "models", "registry"]  # fmt: skip


def keel_imports(path: Path) -> set[str]:
    """The keel subpackages or modules a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("keel.")}
    return found


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

"""Facts flow down (docs/architecture.md): a lower layer never imports a higher one, and no two
parts of keel import each other, directly or around a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "keel"
BENCH = "benchmarks"  # the repository's benchmark harness, above the package
# docs/architecture.md's layers, from the bottom: each top-level module or subpackage of keel
# (a part) may import its own layer and the ones below
LAYERS = (
    {"errors", "storage", "durations", "config", "runtime"},
    {"quality", "targets", "prediction_log"},
    {"data", "features", "models"},
    {"registry"},
    {"training", "serving", "monitoring"},
    {"pipeline", "traffic", "submission", "app", "cli", "tracking", "scaffold", "notebook"},
)
LAYER = {part: level for level, parts in enumerate(LAYERS, 1) for part in parts}


def imports(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """The absolute module names a file under `root` imports (and `module.name` of a
    from-import), at any depth of the file: a lazy import inside a function counts too.
    Relative imports are resolved against the file's own package."""
    module = path.relative_to(root).with_suffix("").parts
    package = module if path.name == "__init__.py" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            name = ".".join([*base, *([node.module] if node.module else [])])
            found |= {name} | {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def keel_imports(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """The parts of keel a file imports."""
    return {n.split(".")[1] for n in imports(path, root) if n.startswith("keel.")}


def parts() -> set[str]:
    """keel's top-level modules and subpackages."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    return modules | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def files_of(part: str) -> list[Path]:
    single = PACKAGE / f"{part}.py"
    return [single] if single.is_file() else sorted((PACKAGE / part).rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Each part -> the other parts it imports."""
    return {
        part: {name for path in files_of(part) for name in keel_imports(path)} - {part}
        for part in parts()
    }


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A loop of imports (its first part repeated at its end), or None when there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(edges.get(node, ())):
            if found := visit(nxt, [*path, node]):
                return found
        done.add(node)
        return None

    return next((c for node in sorted(edges) if (c := visit(node, []))), None)


def test_every_part_has_a_layer():
    """A new module or subpackage is placed in a layer (here and in docs/architecture.md)."""
    assert parts() == set(LAYER)


@pytest.mark.parametrize("part", sorted(LAYER))
def test_no_part_imports_a_layer_above_it(part):
    files = files_of(part)
    assert files, part
    upward = {
        f"{path.relative_to(PACKAGE)} -> {name}"
        for path in files
        for name in keel_imports(path)
        if LAYER[name] > LAYER[part]
    }
    assert not upward, sorted(upward)


def test_no_parts_import_each_other_around_a_loop():
    """Within a layer too: a loop makes the parts one unit that cannot be read, tested or
    imported without the others."""
    assert cycle(graph()) is None


def test_the_package_never_imports_the_benchmarks():
    """benchmarks/ sits beside keel, outside the installed package: a replica never ships it."""
    found = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(n.split(".")[0] == BENCH for n in imports(path))
    }
    assert not found, sorted(found)


def test_the_check_sees_an_upward_import(tmp_path):
    planted = tmp_path / "keel" / "monitoring" / "x.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from keel.training.metrics import class_index\n")
    assert keel_imports(planted, tmp_path) == {"training"}


def test_the_check_resolves_relative_imports(tmp_path):
    planted = tmp_path / "keel" / "monitoring" / "x.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("from . import drift\nfrom ..cli import main\nfrom .. import app\n")
    assert keel_imports(planted, tmp_path) == {"monitoring", "cli", "app"}


def test_the_check_sees_a_loop():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_routes_do_not_import_the_ingress():
    """serving/api.py builds the app from a Protocol; ingress.py imports it, not the reverse."""
    tree = ast.parse((PACKAGE / "serving" / "api.py").read_text())
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    }
    assert "ingress" not in imported

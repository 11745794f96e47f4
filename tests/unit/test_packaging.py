"""`pip install keel` without extras brings no Jupyter: a Serve replica or a Train worker never
needs it. The notebooks' stack is the `lab` extra (make lab, make kernel, make test)."""

from __future__ import annotations

import importlib.metadata as metadata

from packaging.requirements import Requirement

JUPYTER = ("jupyter", "ipykernel", "ipywidgets", "ipython", "notebook")


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution these requirements bring in, as installed here (extras followed)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        key = (req.name.lower().replace("_", "-"), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:  # an optional one not installed here
            continue
        extras = sorted(req.extras) or [""]
        for line in requires:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return {name for name, _ in seen}


def test_the_base_install_brings_no_jupyter():
    base = [Requirement(r) for r in metadata.requires("keel") or []]
    base = [r for r in base if r.marker is None or r.marker.evaluate({"extra": ""})]
    found = installed_closure(base)
    assert "ray" in found and "torch" in found  # the walk follows the real requirements
    assert not {n for n in found if n.startswith(JUPYTER)}, sorted(found)


def test_the_lab_extra_brings_the_notebook_stack():
    keel = [Requirement(r) for r in metadata.requires("keel") or []]
    lab = {r.name for r in keel if r.marker is not None and r.marker.evaluate({"extra": "lab"})}
    assert {"jupyterlab", "ipykernel", "ipywidgets"} <= lab

"""Two writers at once (issue 21, fault 4): registry writers, each a process of its own,
registering versions of one model and moving its production stage at the same time, on a local
path and on an S3-compatible server (moto). Versions get distinct numbers, the first to pass
the floor alone becomes production, stages.json is never torn and its history keeps every move.
"""

from __future__ import annotations

import itertools
import multiprocessing

import pytest

from keel.errors import RegistryError
from keel.registry import Registry, register_candidate

WRITERS = 4
VERSIONS_EACH = 3
MOVES_EACH = 4
MODEL = "churn"


def _register(root: str, writer: int, start, out) -> None:
    """A writer's versions, registered as training does (the first passing one promoted)."""
    registry = Registry(root)
    start.wait()
    for i in range(VERSIONS_EACH):
        mv, promoted = register_candidate(registry, MODEL, {"who.txt": f"{writer}/{i}"}, None)
        out.put((f"{writer}/{i}", mv.version, promoted))


def _move(root: str, writer: int, start, out) -> None:
    """Even writers promote (each its own versions in turn), odd ones roll back."""
    registry = Registry(root)
    start.wait()
    for i in range(MOVES_EACH):
        try:
            if writer % 2:
                out.put(("rollback", registry.rollback(MODEL, reason=f"{writer}/{i}")))
            else:
                version = 1 + (writer * MOVES_EACH + i) % (WRITERS * VERSIONS_EACH)
                done = registry.promote(MODEL, version, reason=f"{writer}/{i}")
                out.put(("promote", None if done.unchanged else version))
        except RegistryError as e:  # nothing left to roll back to: refused, and recorded
            out.put(("refused", str(e)))


def _at_once(target, root: str) -> list:
    """`target` in WRITERS processes, released together; what they reported."""
    spawn = multiprocessing.get_context("spawn")
    start, out = spawn.Barrier(WRITERS), spawn.Queue()  # each past its imports, then all at once
    writers = [spawn.Process(target=target, args=(root, w, start, out)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
    assert all(p.exitcode == 0 for p in writers), [p.exitcode for p in writers]
    reports = []
    while not out.empty():
        reports.append(out.get())
    return reports


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "registry")
    return f"{request.getfixturevalue('s3_root')}/writers-{tmp_path.name}/registry"


def test_writers_at_once_get_distinct_versions_and_stages_keep_every_move(root):
    registered = _at_once(_register, root)
    registry = Registry(root)
    numbers = sorted(version for _, version, _ in registered)
    assert len(registered) == WRITERS * VERSIONS_EACH
    assert len(set(numbers)) == len(numbers), numbers  # never two writers on one number
    assert [mv.version for mv in registry.versions(MODEL)] == numbers  # every one complete
    for who, version, _ in registered:  # each number holds its own writer's files
        assert registry.read_text(registry.get(MODEL, version), "who.txt") == who
    promoted = [version for _, version, first in registered if first]
    assert len(promoted) == 1, registered  # the first to pass the floor, and only it
    assert registry.stages(MODEL).production == promoted[0]

    # a history to roll back through, then promotions racing rollbacks
    earlier = [v for v in numbers if v != promoted[0]][:3]
    for version in earlier:
        registry.promote(MODEL, version, reason="before the race")
    moved = _at_once(_move, root)
    stages = registry.stages(MODEL)  # parses: never torn
    history = [m for m in stages.history if m.stage == "production"]
    changes = [m for m in moved if m[0] == "rollback" or (m[0] == "promote" and m[1])]
    assert len(history) == 1 + len(earlier) + len(changes), (moved, history)  # no move lost
    assert any(m[0] == "rollback" for m in moved) and any(m[0] == "promote" for m in moved)
    for before, after in itertools.pairwise(history):
        assert after.previous == before.version, history  # each move saw the one before it
    assert stages.production == history[-1].version

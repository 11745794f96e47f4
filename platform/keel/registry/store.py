"""The versioned model store: versions written atomically, verified on read, moved by stages.

Layout under the registry root (a local path or a pyarrow filesystem URI):

    <model>/stages.json     {"production": 3, "staging": null, "history": [...]} (stages.py)
    <model>/0003/...        the version's files, then version.json (the manifest) LAST

The manifest is the commit point: a directory without one is an unfinished (or crashed)
registration and is invisible. The manifest holds each file's sha256 and every read checks
it, so a corrupted or replaced file is an error naming the file, never a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from keel import storage
from keel.errors import RegistryError
from keel.quality import LOWER_IS_BETTER  # which way each test metric improves

from . import claim
from .bundle import Content, File
from .lineage import now
from .stages import HISTORY, Action, Move, Promotion, Stages

log = logging.getLogger(__name__)

MANIFEST = "version.json"
STAGES = "stages.json"
STAGES_LOCK = ".stages.lock"  # the directory of stages.json's lock claims (claim.held)
STALE_AFTER_S = 3600.0  # an unfinished version directory this old belongs to a dead writer

# matched with fullmatch: "$" would also accept a name ending in a newline
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_STAGE = re.compile(r"[a-z][a-z0-9_-]*")
_REF = re.compile(r"[vV]?(\d+)")


class PromotionRefused(RegistryError):
    """The candidate misses the SLO quality floor; `failures` holds one sentence per metric."""

    def __init__(self, message: str, failures: list[str]):
        super().__init__(message)
        self.failures = failures


@dataclass
class ModelVersion:
    model: str
    version: int
    path: str  # the version directory (local path or URI)
    created_at: str
    parent: int | None
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version}"

    def uri(self, name: str) -> str:
        return storage.join(self.path, name)


# ------------------------------------------------------------- storage helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_number(ref: int | str) -> int | None:
    """The number a reference pins (3, "3", "v3"); None for "latest" or a stage name."""
    if isinstance(ref, int):
        return ref
    match = _REF.fullmatch(ref)
    return int(match.group(1)) if match else None


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no slashes, not starting with '.')"
        )
    return name


def _check_stage(stage: str) -> str:
    if not _STAGE.fullmatch(stage) or stage in ("latest", HISTORY):
        raise RegistryError(
            f"invalid stage {stage!r}: use a lowercase name such as production or staging"
        )
    return stage


# ------------------------------------------------------------------------- the registry


class Registry:
    """Models, their versions and stages under one root directory or URI."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") or root

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    def _model_dir(self, model: str) -> str:
        return storage.join(self.root, _check_name(model, "model"))

    def _version_dir(self, model: str, version: int) -> str:
        return storage.join(self._model_dir(model), f"{version:04d}")

    # ---------------------------------------------------------------------- reading

    def models(self) -> list[str]:
        """Models with at least one complete version."""
        names = [
            i.base_name
            for i in storage.list_dir(self.root)
            if i.type == pafs.FileType.Directory and _NAME.fullmatch(i.base_name)
        ]
        return sorted(n for n in names if any(self._is_complete(n, v) for v in self._numbers(n)))

    def _numbers(self, model: str) -> list[int]:
        """Every version directory, complete or not: new numbers go past all of them."""
        return sorted(
            int(i.base_name)
            for i in storage.list_dir(self._model_dir(model))
            if i.type == pafs.FileType.Directory and i.base_name.isdigit()
        )

    def _is_complete(self, model: str, version: int) -> bool:
        return storage.exists(storage.join(self._version_dir(model, version), MANIFEST))

    def _manifest(self, model: str, version: int) -> ModelVersion | None:
        path = self._version_dir(model, version)
        uri = storage.join(path, MANIFEST)
        if not storage.exists(uri):
            return None
        try:
            m = storage.read_json(uri)
            return ModelVersion(
                model=model,
                version=version,
                path=path,
                created_at=str(m["created_at"]),
                parent=m.get("parent"),
                files={str(k): str(v) for k, v in m["files"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RegistryError(f"{uri} is not a valid version manifest ({e!r})") from None

    def versions(self, model: str) -> list[ModelVersion]:
        """Complete versions, oldest first."""
        found = (self._manifest(model, n) for n in self._numbers(model))
        return [mv for mv in found if mv is not None]

    def get(self, model: str, version: int | str = "production") -> ModelVersion:
        """A version by number ("3", "v3"), "latest", or the name of a stage."""
        number = version_number(version)
        if number is not None:
            mv = self._manifest(model, number)
            if mv is None:
                raise RegistryError(f"{model} has no version {number} {self._known(model)}")
            return mv
        if version == "latest":
            for n in reversed(self._numbers(model)):
                if mv := self._manifest(model, n):
                    return mv
            raise RegistryError(f"{model} has no versions {self._known(model)}")
        stages = self.stages(model)
        if version not in stages.held:
            raise RegistryError(
                f"unknown version or stage {version!r} for {model}: "
                f"use a number, 'latest', or a stage ({', '.join(stages.held)})"
            )
        if (held := stages.get(version)) is None:
            raise RegistryError(
                f"{model} has no {version} version {self._known(model)}; promote one with "
                f"`keel registry promote {model} VERSION --stage {version}`"
            )
        return self.get(model, held)

    def _known(self, model: str) -> str:
        """What does exist, for error messages."""
        numbers = [v.version for v in self.versions(model)]
        if numbers:
            return f"(versions: {', '.join(map(str, numbers))})"
        return f"(registry {self.root} holds: {', '.join(self.models()) or 'no models'})"

    def read_bytes(self, mv: ModelVersion, name: str) -> bytes:
        """A file of a version, checked against the manifest's sha256."""
        if name not in mv.files:
            have = ", ".join(sorted(mv.files)) or "none"
            raise RegistryError(f"{mv.label} has no file {name!r} (files: {have})")
        uri = mv.uri(name)
        try:
            data = storage.read_bytes(uri)
        except FileNotFoundError:
            raise RegistryError(f"{uri} is missing: {mv.label} is damaged") from None
        if _sha256(data) != mv.files[name]:
            raise RegistryError(
                f"{uri} is corrupted: its sha256 does not match {mv.label}'s manifest "
                "(the file changed after registration); restore it or register a new version"
            )
        return data

    def read_text(self, mv: ModelVersion, name: str) -> str:
        return self.read_bytes(mv, name).decode()

    def read_json(self, mv: ModelVersion, name: str) -> Any:
        try:
            return json.loads(self.read_bytes(mv, name))
        except ValueError as e:
            raise RegistryError(f"{mv.uri(name)} is not valid JSON ({e})") from None

    # ---------------------------------------------------------------------- writing

    def register(
        self, model: str, files: dict[str, Content], *, parent: int | None = None
    ) -> ModelVersion:
        """Write a new version: files first, the manifest last, so a crash leaves nothing.

        A file given as a function of the version number (a model card that names its own
        version) is rendered once the number is claimed.
        """
        _check_name(model, "model")
        if not files:
            raise RegistryError(f"nothing to register for {model}: no files given")
        for name in files:
            _check_name(name, "file")
            if name == MANIFEST:
                raise RegistryError(f"{MANIFEST} is the registry's manifest; rename that file")
        if parent is not None:
            self.get(model, int(parent))
        version, path = self._claim(model)
        rendered = {n: d(version) if callable(d) else d for n, d in files.items()}
        blobs = {n: d.encode() if isinstance(d, str) else bytes(d) for n, d in rendered.items()}
        self._remove_stale(model, below=version)
        for name, data in blobs.items():
            storage.write_bytes(storage.join(path, name), data)
        mv = ModelVersion(
            model=model,
            version=version,
            path=path,
            created_at=now(),
            parent=parent,
            files={n: _sha256(d) for n, d in blobs.items()},
        )
        manifest = {
            "model": model,
            "version": version,
            "created_at": mv.created_at,
            "files": mv.files,
            "parent": parent,
            "status": "candidate",
        }
        storage.write_json(storage.join(path, MANIFEST), manifest)
        log.info("registered %s at %s (%d files)", mv.label, path, len(blobs))
        return mv

    def _claim(self, model: str) -> tuple[int, str]:
        """The next number past every version directory, including unfinished ones, claimed
        (claim.take) so that two writers at once never share one: a writer that meets
        another's claim, or claims at the same moment, tries the next number."""
        version = max(self._numbers(model), default=0) + 1
        while not claim.take(self._version_dir(model, version)):
            version += 1
            time.sleep(random.uniform(0.0, 0.05))  # out of step with a writer that also moved on
        return version, self._version_dir(model, version)

    def _remove_stale(self, model: str, *, below: int) -> None:
        """Delete unfinished version directories left by writers dead for over an hour."""
        for n in self._numbers(model):
            if n >= below or self._is_complete(model, n):
                continue
            path = self._version_dir(model, n)
            stamps = [i.mtime_ns for i in storage.list_dir(path, recursive=True) if i.mtime_ns]
            if stamps and time.time() - max(stamps) / 1e9 > STALE_AFTER_S:
                log.warning("removing unfinished version directory %s (stale)", path)
                storage.delete_dir(path)

    # ---------------------------------------------------------------------- stages

    def stages_uri(self, model: str) -> str:
        return storage.join(self._model_dir(model), STAGES)

    def stages(self, model: str) -> Stages:
        uri = self.stages_uri(model)
        if not storage.exists(uri):
            return Stages()
        try:
            stored = storage.read_json(uri)
        except ValueError as e:
            raise RegistryError(f"{uri} is not valid JSON ({e})") from None
        return Stages.from_json(stored, uri, model)

    def _write_stages(self, model: str, stages: Stages) -> None:
        storage.write_json(self.stages_uri(model), stages.to_json())

    def _stages_held(self, model: str):
        """The lock on stages.json: its changes are a read, a change and a write, and two at
        once (a promotion racing a rollback) would lose one of the two history entries."""
        return claim.held(storage.join(self._model_dir(model), STAGES_LOCK), self.stages_uri(model))

    def floor_failures(self, mv: ModelVersion, floor: dict[str, float] | None) -> list[str]:
        """Why this version misses the quality floor; empty when it passes (or no floor)."""
        if not floor:
            return []
        if File.metrics not in mv.files:
            return [f"{mv.label} has no {File.metrics} to check against slo.quality_floor"]
        return check_floor(self.read_json(mv, File.metrics), floor)

    def promote(
        self,
        model: str,
        version: int,
        stage: str = "production",
        *,
        floor: dict[str, float] | None = None,
        force: bool = False,
        reason: str = "",
        if_vacant: bool = False,
    ) -> Promotion:
        """Move a stage to a version if it meets the floor (or force).

        Promoting the version that already holds the stage changes nothing and records nothing,
        nor does promoting to a stage another version holds when `if_vacant`.
        """
        _check_stage(stage)
        mv = self.get(model, int(version))
        failures = self.floor_failures(mv, floor)
        if failures and not force:
            lines = "\n".join(f"  - {f}" for f in failures)
            raise PromotionRefused(
                f"refusing to promote {mv.label} to {stage}: it misses the SLO quality floor\n"
                f"{lines}\nimprove the model, change slo.quality_floor, or pass --force "
                "(with --reason) to promote it anyway",
                failures,
            )
        with self._stages_held(model):
            stages = self.stages(model)
            move = Move(
                stage=stage,
                version=mv.version,
                previous=stages.get(stage),
                at=now(),
                reason=reason,
                forced=bool(force),
                action=Action.promote,
                bypassed=tuple(failures),
            )
            if move.previous == mv.version or (if_vacant and move.previous is not None):
                log.info("%s v%s holds %s; nothing to do", model, move.previous, stage)
                return Promotion(move, unchanged=True)
            stages.record(move)
            self._write_stages(model, stages)
        log.info("promoted %s to %s (previous: %s)", mv.label, stage, move.previous)
        return Promotion(move)

    def rollback(self, model: str, stage: str = "production", *, reason: str = "") -> int:
        """Give the stage back to the version that held it before the current one.

        History works as a stack: a second rollback goes one further back, not forward again.
        """
        _check_stage(stage)
        with self._stages_held(model):
            stages = self.stages(model)
            current = stages.get(stage)
            if current is None:
                raise RegistryError(f"{model} has no {stage} version to roll back")
            held = stages.holders(stage)
            if not held or held[-1] != current:
                held.append(current)
            if len(held) < 2:
                raise RegistryError(
                    f"no earlier {stage} version of {model} to roll back to "
                    f"(v{current} is the first in its history)"
                )
            target = self.get(model, held[-2]).version
            stages.record(
                Move(
                    stage=stage,
                    version=target,
                    previous=current,
                    at=now(),
                    reason=reason or f"rollback from v{current}",
                    action=Action.rollback,
                )
            )
            self._write_stages(model, stages)
        log.info("rolled back %s %s from v%s to v%s", model, stage, current, target)
        return target


# ------------------------------------------------------------------------- quality floor


def check_floor(
    metrics: dict, floor: dict[str, float], setting: str = "slo.quality_floor"
) -> list[str]:
    """One sentence per floor the test metrics miss: a minimum, or a maximum for error metrics.
    `setting` is the config key the floor came from, named in each sentence."""
    test = metrics.get("test") if isinstance(metrics, dict) else None
    test = test if isinstance(test, dict) else {}
    failures = []
    for name, bound in floor.items():
        key = f"{setting}.{name}"
        value = test.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            have = ", ".join(sorted(test)) or "none"
            failures.append(
                f"{name} is missing from the test metrics (have: {have}); {key} needs it"
            )
        elif math.isnan(value):
            failures.append(f"{name} is NaN, which cannot meet the SLO floor ({key})")
        elif name in LOWER_IS_BETTER and value > bound:
            failures.append(f"{name} {_fmt(value)} is above the SLO ceiling {_fmt(bound)} ({key})")
        elif name not in LOWER_IS_BETTER and value < bound:
            failures.append(f"{name} {_fmt(value)} is below the SLO floor {_fmt(bound)} ({key})")
    return failures


def _fmt(x: float) -> str:
    """Two decimals when exact, more digits when rounding would hide a near miss."""
    return f"{x:.2f}" if round(x, 2) == x else f"{x:.6g}"


def register_candidate(
    registry: Registry,
    model: str,
    files: dict[str, Content],
    floor: dict[str, float] | None,
    parent: int | None = None,
) -> tuple[ModelVersion, bool]:
    """Register a version; the first one to meet the floor becomes production by itself."""
    mv = registry.register(model, files, parent=parent)
    if registry.stages(model).production is not None:
        return mv, False
    failures = registry.floor_failures(mv, floor)
    if failures:
        log.info("%s stays a candidate: %s", mv.label, "; ".join(failures))
        return mv, False
    # another writer may have registered a first version too: whichever promotes first wins
    done = registry.promote(
        model,
        mv.version,
        "production",
        floor=floor,
        reason="first version passing the SLO floor",
        if_vacant=True,
    )
    return mv, not done.unchanged

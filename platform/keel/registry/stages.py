"""A model's stages and their history: what `<model>/stages.json` holds, as types.

    {"production": 3, "staging": null, "history": [{"stage": "production", "version": 3, ...}]}

The registry reads the file into `Stages` and writes it back from one; nothing else knows its
shape. A promotion returns a `Promotion`: the history entry it wrote (or would have written,
when the version already held the stage and nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from keel.errors import RegistryError

STAGE_NAMES = ("production", "staging")  # always present; others may be added
HISTORY = "history"  # the one key of the file that is not a stage


class Action(StrEnum):
    promote = "promote"
    rollback = "rollback"


@dataclass(frozen=True)
class Move:
    """One entry of the history: a stage handed to a version, by whom and why."""

    stage: str
    version: int
    previous: int | None  # the version that held the stage before
    at: str  # UTC, ISO 8601
    reason: str = ""
    forced: bool = False  # promoted past the quality floor
    action: Action = Action.promote
    bypassed: tuple[str, ...] = ()  # the floor's failures a forced promotion went past

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "version": self.version,
            "previous": self.previous,
            "at": self.at,
            "reason": self.reason,
            "forced": self.forced,
            "action": self.action.value,
        }
        if self.bypassed:  # absent rather than empty, as files have always been written
            out["bypassed"] = list(self.bypassed)
        return out

    @classmethod
    def from_json(cls, entry: Any, uri: str) -> Move:
        # entries written before `action` and `forced` existed were promotions
        try:
            return cls(
                stage=str(entry["stage"]),
                version=int(entry["version"]),
                previous=None if entry.get("previous") is None else int(entry["previous"]),
                at=str(entry.get("at", "")),
                reason=str(entry.get("reason", "")),
                forced=bool(entry.get("forced", False)),
                action=Action(entry.get("action", Action.promote)),
                bypassed=tuple(str(b) for b in entry.get("bypassed", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RegistryError(
                f"{uri}: history entry {entry!r} is not a stage move ({e!r}); fix the file"
            ) from None


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: `move` is the history entry; unchanged when the version
    already held the stage (then nothing was written)."""

    move: Move
    unchanged: bool = False


@dataclass
class Stages:
    """Which version holds each stage (None: none), and every move that got them there."""

    held: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(STAGE_NAMES))
    history: list[Move] = field(default_factory=list)

    def get(self, stage: str) -> int | None:
        return self.held.get(stage)

    @property
    def production(self) -> int | None:
        return self.held.get("production")

    def of(self, version: int) -> list[str]:
        """The stages a version holds."""
        return [stage for stage, held in self.held.items() if held == version]

    def record(self, move: Move) -> None:
        self.held[move.stage] = move.version
        self.history.append(move)

    def holders(self, stage: str) -> list[int]:
        """The stack of versions that held a stage: promotions push, rollbacks pop."""
        stack: list[int] = []
        for move in self.history:
            if move.stage != stage:
                continue
            if move.action is Action.rollback:
                if stack:
                    stack.pop()
                if not stack or stack[-1] != move.version:
                    stack.append(move.version)
                continue
            if not stack and move.previous is not None:
                stack.append(move.previous)
            stack.append(move.version)
        return stack

    def to_json(self) -> dict[str, Any]:
        return {**self.held, HISTORY: [m.to_json() for m in self.history]}

    @classmethod
    def from_json(cls, stored: Any, uri: str, model: str) -> Stages:
        if not isinstance(stored, dict) or not isinstance(stored.get(HISTORY, []), list):
            raise RegistryError(f"{uri} is not a stages file (expected an object)")
        held: dict[str, int | None] = dict.fromkeys(STAGE_NAMES)
        for stage, version in stored.items():
            if stage == HISTORY:
                continue
            if version is not None and (type(version) is not int or version < 1):
                raise RegistryError(
                    f"{uri}: stage {stage!r} holds {version!r}, not a version number; "
                    f"fix the file or run `keel registry promote {model} VERSION "
                    f"--stage {stage}`"
                )
            held[stage] = version
        history = [Move.from_json(e, uri) for e in stored.get(HISTORY, [])]
        return cls(held, history)

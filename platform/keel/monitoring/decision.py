"""A retraining decision, as types: what `<reports>/<model>/retrain/<run>/decision.json` holds.

`keel retrain` fills a `Decision` as it goes (what triggered it, the data, each contender's
holdout metrics) and writes it once, at the end, whichever way it ends. The JSON keeps the
shape it has always had: a part the run never reached (no data, no challenger) is absent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .logs import Window

DECISION = "decision.json"  # in each run's directory under <reports>/<model>/retrain/


@dataclass(frozen=True)
class Trigger:
    """Why the run went ahead (or did not)."""

    run: bool
    why: str
    verdict: str | None = None  # the path of the latest monitor verdict, if any
    window: Window | None = None  # that verdict's window

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.verdict}
        if self.window is not None:
            out["window"] = self.window.to_dict()
        return {**out, "run": self.run, "why": self.why}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trigger:
        window = Window.from_dict(d["window"]) if d.get("window") else None
        return cls(bool(d["run"]), str(d["why"]), d.get("verdict"), window)


@dataclass
class Contender:
    """The champion or the challenger: its version and the metrics it was judged on."""

    version: int
    test: dict[str, float] | None = None  # the challenger's test split, at training
    holdout: dict[str, float] | None = None  # the recent holdout both are judged on

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        for key in ("test", "holdout"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Contender:
        return cls(int(d["version"]), d.get("test"), d.get("holdout"))


@dataclass
class RetrainData:
    """The rows: recent labeled production rows, and what the challenger was trained on."""

    recent_labeled: int
    since: str  # the start of the window they were read from
    original: int | None = None  # rows of the champion's own training source
    recent_train: int | None = None  # recent rows trained on (each `recent_weight` times)
    holdout: int | None = None  # recent rows never trained on, judging both
    recent_weight: int | None = None
    file: str | None = None  # the combined training file

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RetrainData:
        return cls(**d)


@dataclass
class Decision:
    """A retraining run's outcome and the numbers behind it."""

    model: str
    champion: Contender
    trigger: Trigger
    data: RetrainData | None = None
    challenger: Contender | None = None
    primary: str | None = None  # the metric compared
    margin: float | None = None  # monitor.retrain.margin
    floor: dict[str, float] | None = None  # slo.quality_floor
    promoted: bool = False
    reason: str = ""
    at: str = ""
    path: str | None = field(default=None, compare=False)  # where it was written; not in it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "champion": self.champion.to_json(),
            "trigger": self.trigger.to_json(),
        }
        if self.data is not None:
            out["data"] = self.data.to_json()
        if self.challenger is not None:
            out["challenger"] = self.challenger.to_json()
        if self.primary is not None:
            out.update(primary=self.primary, margin=self.margin, floor=self.floor)
        return {**out, "promoted": self.promoted, "reason": self.reason, "at": self.at}

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None) -> Decision:
        return cls(
            model=str(d["model"]),
            champion=Contender.from_json(d["champion"]),
            trigger=Trigger.from_json(d["trigger"]),
            data=RetrainData.from_json(d["data"]) if "data" in d else None,
            challenger=Contender.from_json(d["challenger"]) if "challenger" in d else None,
            primary=d.get("primary"),
            margin=d.get("margin"),
            floor=d.get("floor"),
            promoted=bool(d["promoted"]),
            reason=str(d["reason"]),
            at=str(d["at"]),
            path=path,
        )

"""Post-processing declared per model in `serve.models.<m>.postprocess`: thresholds and class
names, top-k, clip and round, and business rules, returned beside the raw prediction.

Columnar, so batch inference over millions of rows and a one-row request run the same code.
Rules test the raw prediction (P(positive), the top class probability, or the regression value).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.config.schema import PostprocessConfig, RuleAction, RuleSpec, Task
from keel.errors import ConfigError
from keel.models import Head


class Postprocessor:
    def __init__(self, spec: PostprocessConfig, head: Head, where: str = "postprocess"):
        self.spec, self.head, self.task = spec, head, Task(head.task)
        self.names = self._class_names(where)
        self._check(where)

    def _class_names(self, where: str) -> list[Any]:
        if self.task == Task.regression:
            return []
        if self.spec.labels is None:
            return list(self.head.labels)
        if len(self.spec.labels) != len(self.head.labels):
            raise ConfigError(
                f"{where}.labels: {len(self.spec.labels)} names for a model with "
                f"{len(self.head.labels)} classes {self.head.labels}"
            )
        return list(self.spec.labels)

    def _check(self, where: str) -> None:
        s, task = self.spec, self.task
        allowed = {
            Task.binary_classification: {"threshold", "labels"},
            Task.multiclass_classification: {"labels", "top_k"},
            Task.regression: {"clip_min", "clip_max", "round"},
        }[task]
        for key in ("threshold", "labels", "top_k", "clip_min", "clip_max", "round"):
            if getattr(s, key) is not None and key not in allowed:
                raise ConfigError(f"{where}.{key} does not apply to a {task.value} model")
        if s.top_k is not None and s.top_k > len(self.names):
            raise ConfigError(
                f"{where}.top_k={s.top_k} but the model has {len(self.names)} classes"
            )
        for i, rule in enumerate(s.rules):
            if rule.action == RuleAction.set and task != Task.regression:
                raise ConfigError(
                    f"{where}.rules.{i} ({rule.name}): action=set changes a regression value; "
                    f"use action=flag for a {task.value} model"
                )

    def columns(self, raw: np.ndarray) -> dict[str, Any]:
        """Post-processed outputs as columns: label or value, top_k, and the rules that fired."""
        raw = np.asarray(raw, np.float64)
        score = raw.max(axis=1) if raw.ndim == 2 else raw
        out: dict[str, Any] = {}
        if self.task == Task.binary_classification:
            threshold = 0.5 if self.spec.threshold is None else self.spec.threshold
            out["label"] = np.asarray(self.names, dtype=object)[(raw >= threshold).astype(int)]
        elif self.task == Task.multiclass_classification:
            names = np.asarray(self.names, dtype=object)
            out["label"] = names[raw.argmax(axis=1)]
            if self.spec.top_k:
                top = np.argsort(-raw, axis=1, kind="stable")[:, : self.spec.top_k]
                out["top_k"] = [
                    [{"label": names[j], "probability": float(p[j])} for j in idx]
                    for p, idx in zip(raw, top, strict=True)
                ]
        else:
            out["value"] = self._value(raw)
        fired = [_fires(rule, score) for rule in self.spec.rules]
        out["rules"] = [
            [r.name for r, f in zip(self.spec.rules, fired, strict=True) if f[i]]
            for i in range(len(raw))
        ]
        return out

    def _value(self, raw: np.ndarray) -> np.ndarray:
        s = self.spec
        value = raw.copy()
        for rule in s.rules:
            if rule.action == RuleAction.set:
                value = np.where(_fires(rule, raw), float(rule.value), value)
        if s.clip_min is not None or s.clip_max is not None:
            value = np.clip(value, s.clip_min, s.clip_max)
        return value.round(s.round) if s.round is not None else value

    def rows(self, raw: np.ndarray) -> list[dict[str, Any]]:
        """The same outputs, one JSON-ready dict per instance."""
        cols = self.columns(raw)
        return [{k: _plain(v[i]) for k, v in cols.items()} for i in range(len(raw))]


def _fires(rule: RuleSpec, score: np.ndarray) -> np.ndarray:
    if rule.between is not None:
        low, high = rule.between
        return (score >= low) & (score <= high)
    if rule.below is not None:
        return score < rule.below
    return score > rule.above


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value

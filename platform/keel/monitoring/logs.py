"""What monitoring reads from the serving logs: a window of one version's predictions, the
requests behind them, and feedback labels joined to the predictions by request id.

Feedback is messy: labels arrive late, twice, or for ids nobody served. The join keeps the
latest label per id and counts every other case, so the report says what was left out and why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel import prediction_log as plog
from keel.config.schema import KeelConfig, Task
from keel.durations import duration_seconds
from keel.errors import KeelError
from keel.targets import encode_one

REQUEST_ID = "request_id"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, duration: str, end: datetime | None = None) -> Window:
        end = end or plog.now()
        return cls(end - timedelta(seconds=duration_seconds(duration)), end)

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Window:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))


def predictions(
    logs: str, model: str, version: int | None, window: Window, columns: list[str] | None = None
) -> pa.Table:
    """The rows a version (None: any) answered in the window; shadow rows were no answers.
    Every fixed field is there (or the `columns` named), null in rows logged before it existed.
    Naming the columns saves reading the others: ids and JSON outputs are most of a log."""
    directory = plog.predictions_dir(logs, model)
    return plog.read(
        directory,
        window.start,
        window.end,
        columns=columns,
        fields=plog.PREDICTION_FIELDS,
        where=_answered_by(version),
    )


def sample(
    logs: str, model: str, version: int, window: Window, columns: list[str], rows: int, seed: int
) -> pa.Table:
    """About twice `rows` of the rows a version answered in the window (all of them when there
    are no more), `columns` only, from whole log files drawn at random (plog.read_sample)."""
    directory = plog.predictions_dir(logs, model)
    return plog.read_sample(
        directory,
        window.start,
        window.end,
        rows,
        seed,
        columns=columns,
        fields=plog.PREDICTION_FIELDS,
        where=_answered_by(version),
    )


def feedback_given(logs: str, window: Window) -> bool:
    """Whether a label was posted since the window began: only then does the join need the
    request id of every prediction in the window (most of what a log holds)."""
    return plog.read(plog.feedback_dir(logs), window.start, columns=[REQUEST_ID]).num_rows > 0


def class_probabilities(logged: pa.Array | pa.ChunkedArray, k: int) -> np.ndarray:
    """The logged class probabilities (prediction_log.PROBABILITIES) of k classes as an (n, k)
    matrix. A row without k of them (logged before the log kept them, or by a model with
    other classes) is all NaN: it cannot be scored, and quality counts it as unscored."""
    column = logged.combine_chunks() if isinstance(logged, pa.ChunkedArray) else logged
    out = np.full((len(column), k), np.nan)
    whole = np.asarray(pc.list_value_length(column).fill_null(0).to_numpy(), np.int64) == k
    if whole.any():
        values = pc.list_flatten(column.filter(pa.array(whole)))
        rows = np.asarray(values.to_numpy(zero_copy_only=False), np.float64).reshape(-1, k)
        # a float32 softmax sums to 1 only within ~1e-7; metrics that check the sum in float64
        # (scikit-learn's log loss, under Evidently) warned on every report
        out[whole] = rows / rows.sum(axis=1, keepdims=True)
    return out


class NotLogged(KeelError):
    """The app did not write the predictions it answered within the time allowed."""


def wait_logged(
    cfg: KeelConfig, model: str, start: datetime, rows: int, labels: int, timeout_s: float = 60
) -> Window:
    """Wait until the app has written `rows` predictions of `model` and `labels` feedback rows
    since `start` (replicas flush by size and time); the window they fill."""
    deadline = time.monotonic() + timeout_s
    logged = labeled = 0
    while time.monotonic() < deadline:
        window = Window(start, plog.now())
        logged = predictions(cfg.paths.logs, model, None, window).num_rows
        if logged >= rows:
            feedback = plog.feedback_dir(cfg.paths.logs)
            labeled = plog.read(feedback, start, window.end, columns=["request_id"]).num_rows
            if labeled >= labels:
                return window
        time.sleep(0.25)
    raise NotLogged(
        f"the app logged {logged} of {rows} {model} rows and {labeled} of {labels} labels "
        f"in {timeout_s:.0f} s"
    )


def _answered_by(version: int | None) -> pc.Expression:
    answered = pc.field("variant") != "shadow"
    return answered if version is None else answered & (pc.field("version") == version)


def requests(logs: str, model: str, window: Window) -> pa.Table:
    directory = plog.requests_dir(logs, model)
    return plog.read(directory, window.start, window.end, fields=plog.REQUEST_FIELDS)


@dataclass
class Labels:
    """Labels joined to served predictions: `y` aligned with `index` rows of the predictions."""

    index: np.ndarray  # row positions in the predictions table that have a label
    y: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def join_feedback(
    logs: str,
    model: str,
    version: int | None,
    served: pa.Table,
    window: Window,
    task: Task,
    classes: list,
) -> Labels:
    """Join feedback given since the window started to `served`, the window's predictions of
    a version (None: any version).

    counts: feedback (rows read), matched, duplicates (extra labels for one id: the latest
    wins), late (for predictions made before the window), other (for another model, version
    or a shadow), unknown (no prediction log holds the id), invalid (not a value of the target).
    """
    feedback = plog.read(plog.feedback_dir(logs), window.start)
    counts = dict.fromkeys(
        ("feedback", "matched", "duplicates", "late", "other", "unknown", "invalid"), 0
    )
    counts["feedback"] = feedback.num_rows
    if feedback.num_rows == 0:
        return Labels(np.zeros(0, np.int64), np.zeros(0), counts)
    latest = _latest_per_id(feedback)
    counts["duplicates"] = feedback.num_rows - len(latest)
    served_ids = served[REQUEST_ID].to_pylist() if served.num_rows else []
    position = {rid: i for i, rid in enumerate(served_ids)}
    index, ys = [], []
    unmatched = set()
    for rid, raw in latest.items():
        if rid not in position:
            unmatched.add(rid)
            continue
        y = parse_label(raw, task, classes)
        if y is None:
            counts["invalid"] += 1
            continue
        index.append(position[rid])
        ys.append(y)
    counts["matched"] = len(index)
    if unmatched:
        late, other = _elsewhere(logs, model, version, unmatched, window)
        counts["late"], counts["other"] = len(late), len(other)
        counts["unknown"] = len(unmatched - late - other)
    return Labels(np.asarray(index, np.int64), np.asarray(ys, np.float64), counts)


def _latest_per_id(feedback: pa.Table) -> dict[str, str]:
    order = np.argsort(np.asarray(feedback["ts"].to_numpy(zero_copy_only=False)), kind="stable")
    ids = feedback[REQUEST_ID].to_pylist()
    labels = feedback["label"].to_pylist()
    return {ids[i]: labels[i] for i in order}  # later rows overwrite earlier ones


def _elsewhere(
    logs: str, model: str, version: int | None, ids: set[str], window: Window
) -> tuple[set[str], set[str]]:
    """Of ids not served in the window: those the same model and version answered before it
    (late), and those another model, version or a shadow served (other)."""
    late: set[str] = set()
    other: set[str] = set()
    for name in plog.logged_models(logs):
        table = plog.read(
            plog.predictions_dir(logs, name), columns=[REQUEST_ID, "version", "variant", "ts"]
        )
        if table.num_rows == 0:
            continue
        table = table.filter(pc.is_in(table[REQUEST_ID], pa.array(sorted(ids))))
        same = table.filter(_answered_by(version)) if name == model else table.slice(0, 0)
        early = same.filter(pc.field("ts") < window.start)
        late.update(early[REQUEST_ID].to_pylist())
        other.update(table[REQUEST_ID].to_pylist())
    return late, other - late


def parse_label(raw: str, task: Task, classes: list) -> float | None:
    """A logged label (JSON text) as the number metrics need (targets.encode_one: the class
    index, so 1 and "1" are the same class; the value for regression); None when it is
    neither."""
    try:
        value: Any = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return encode_one(value, task, classes)

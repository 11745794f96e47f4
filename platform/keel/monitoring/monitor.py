"""`keel monitor`: one version's window of the prediction log against its training data.

The reference is the file the training job stored with the version (a sample of
its training rows with the model's own predictions), so monitoring needs neither Ray nor the
original data source. The window is sampled to `monitor.current_sample` rows before drift is
computed; feedback joins over the whole window. Writes, under
`<reports>/<model>/monitor/<run>/`: report.html and report.json (drift per column), with labels
quality.html and quality.json (Evidently), on request evidently.html and evidently.json, and
verdict.json (README.md, "Monitoring, feedback and retraining"), which `keel retrain` reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel import storage
from keel.config import KeelConfig
from keel.config.schema import Check, ColumnType, DatasetConfig, Task
from keel.errors import KeelError
from keel.features import FeaturePipeline
from keel.prediction_log import PROBABILITIES, logged_name
from keel.registry import ModelVersion, Registry
from keel.registry.bundle import File, Stored
from keel.targets import Unknown, encode
from keel.training import estimator as estimation

from . import checks, report
from .logs import (
    REQUEST_ID,
    Labels,
    Window,
    class_probabilities,
    feedback_given,
    join_feedback,
    predictions,
    requests,
    sample,
)

log = logging.getLogger(__name__)

VERDICT = "verdict.json"
_NOT_MONITORED = (ColumnType.string, ColumnType.timestamp)  # ids, free text, times


class MonitorError(KeelError):
    """The version cannot be monitored (no reference stored with it, no such model)."""


@dataclass
class Verdict:
    """One monitor run's judgement of a version over a window; verdict.json is its JSON."""

    model: str
    version: int
    window: Window
    rows: int  # predictions the version answered in the window
    reference_rows: int  # training rows it was compared with
    files: dict[str, str]  # what the run wrote, by kind (html, json, quality, verdict, ...)
    judgement: checks.Judgement

    @property
    def status(self) -> checks.Status:
        return self.judgement.status

    @property
    def retrain(self) -> bool:
        return self.judgement.retrain

    @property
    def reasons(self) -> list[str]:
        return self.judgement.reasons

    @property
    def failed(self) -> list[Check]:
        return self.judgement.failed

    @property
    def checks(self) -> dict[Check, checks.Outcome]:
        return self.judgement.checks

    # each check's outcome, typed by its kind (older verdicts lack estimate and attribution)
    @property
    def drift(self) -> checks.DriftCheck:
        return self.judgement.checks[Check.drift]  # type: ignore[return-value]

    @property
    def quality(self) -> checks.QualityCheck:
        return self.judgement.checks[Check.quality]  # type: ignore[return-value]

    @property
    def estimate(self) -> checks.EstimateCheck | None:
        """None in a verdict written before the estimate check existed."""
        return self.judgement.checks.get(Check.estimate)  # type: ignore[return-value]

    @property
    def attribution(self) -> checks.AttributionCheck | None:
        """None in a verdict written before the attribution check existed."""
        return self.judgement.checks.get(Check.attribution)  # type: ignore[return-value]

    @property
    def slo(self) -> checks.SloCheck:
        return self.judgement.checks[Check.slo]  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "window": self.window.to_dict(),
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "files": self.files,
            **self.judgement.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Verdict:
        try:
            return cls(
                model=str(data["model"]),
                version=int(data["version"]),
                window=Window.from_dict(data["window"]),
                rows=int(data["rows"]),
                reference_rows=int(data.get("reference_rows", 0)),
                files=dict(data.get("files", {})),
                judgement=checks.Judgement.from_json(data),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MonitorError(f"{where} is not a monitor verdict ({e!r})") from None


@dataclass
class Monitored:
    model: str
    version: int
    window: Window
    rows: int  # predictions this version answered in the window
    verdict: Verdict
    out_dir: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.status == checks.PASS


@dataclass
class Served:
    """What monitoring needs of a registered version."""

    version: ModelVersion
    dataset: DatasetConfig
    columns: dict  # monitored input column -> ColumnSpec
    classes: list  # class labels in output order (classification)
    reference: pd.DataFrame  # monitored inputs, prediction, label (+ probabilities: multiclass)
    estimator: estimation.Estimator | None  # None: the version has none
    inputs: list[str]  # the raw columns its features read (what regression's estimate needs)
    stored: Stored

    @classmethod
    def load(cls, registry: Registry, mv: ModelVersion) -> Served:
        stored = Stored(registry, mv)
        try:
            raw = stored.estimator()
            fitted = None if raw is None else estimation.from_json(raw, stored.uri(File.estimator))
        except ValueError as e:
            raise MonitorError(f"{e}: retrain {mv.label} with keel train") from None
        if not stored.has(File.reference):
            raise MonitorError(
                f"{mv.label} has no {File.reference} to compare traffic with (versions trained "
                "before monitoring existed): retrain it with keel train"
            )
        dataset = stored.dataset()
        spec = stored.spec()
        skip = {dataset.target, dataset.id_column, dataset.timestamp_column}
        columns = {
            c: dataset.columns[c]
            for c in spec.input_columns
            if c in dataset.columns
            and c not in skip
            and ColumnType(dataset.columns[c].type) not in _NOT_MONITORED
        }
        classes = spec.head.get("labels", [])
        table = stored.reference()
        # versions trained before the reference kept class probabilities have none
        kept = [PROBABILITIES] if PROBABILITIES in table.column_names else []
        reference = table.select([*columns, "prediction", *kept]).to_pandas()
        target = table[dataset.target].to_pandas()
        reference["label"] = encode(target.tolist(), dataset.task, classes, Unknown.nan)
        return cls(mv, dataset, columns, classes, reference, fitted, spec.input_columns, stored)

    @property
    def multiclass(self) -> bool:
        return Task(self.dataset.task) is Task.multiclass_classification

    @property
    def drift_columns(self) -> list[str]:
        """What drift reads of the sampled log rows: the monitored inputs and the prediction
        (not the client's ids and times, nor the JSON output)."""
        return [*map(logged_name, self.columns), "prediction"]

    def frame(self, rows: pa.Table) -> pd.DataFrame:
        """Logged rows as the reference's columns (inputs by their dataset names)."""
        names = {logged_name(c): c for c in self.columns}
        return rows.select([*names, "prediction"]).rename_columns([*names.values(), "prediction"])

    def scored(self, logged: pa.Table, index: np.ndarray) -> np.ndarray:
        """What quality is computed from for the logged rows at `index`: the (n, k) class
        probabilities for multiclass (a NaN row where they were not logged), else the
        logged prediction."""
        rows = logged.take(pa.array(index, pa.int64())) if len(index) else None
        if self.multiclass:
            k = len(self.classes)
            return np.zeros((0, k)) if rows is None else class_probabilities(rows[PROBABILITIES], k)
        return np.zeros(0) if rows is None else rows["prediction"].to_numpy(zero_copy_only=False)


def _sample(table: pa.Table, rows: int, seed: int) -> pa.Table:
    if table.num_rows <= rows:
        return table
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, rows, replace=False))
    return table.take(pa.array(picked))


def run(
    cfg: KeelConfig,
    model: str | None = None,
    window: Window | None = None,
    version: int | str = "production",
) -> Monitored:
    """Check one version over a window (default: the last `monitor.window` up to now)."""
    model = model or cfg.dataset.name
    window = window or Window.last(cfg.monitor.window)
    registry = Registry(cfg.paths.registry)
    served = Served.load(registry, registry.get(model, version))
    number = served.version.version
    # every answered row, narrow: quality scores these; the ids only when feedback joins on them
    ids = [REQUEST_ID] if feedback_given(cfg.paths.logs, window) else []
    logged = predictions(cfg.paths.logs, model, number, window, [*ids, "prediction", PROBABILITIES])
    labels = join_feedback(
        cfg.paths.logs, model, number, logged, window, served.dataset.task, served.classes
    )
    scored = served.scored(logged, labels.index)
    out_dir = storage.join(cfg.paths.reports, model, "monitor", storage.stamp())
    minimum = cfg.monitor.min_rows
    files: dict[str, str] = {}
    report_skipped = None  # why labeled rows got no quality report
    too_few = None
    if logged.num_rows < minimum:
        too_few = (
            f"{logged.num_rows} predictions of v{number} in the window, "
            f"fewer than monitor.min_rows {minimum}"
        )
        drift = checks.DriftCheck.skipped(too_few)
    else:
        rows, seed = cfg.monitor.current_sample, cfg.seed
        drawn = sample(cfg.paths.logs, model, number, window, served.drift_columns, rows, seed)
        current = served.frame(_sample(drawn, rows, seed)).to_pandas()
        built = report.build(
            current,
            served.reference,
            served.columns,
            served.dataset.task,
            cfg.monitor,
            labeled=_labeled(served, logged, labels, scored),
            drift_share=cfg.slo.max_drift_share,
            classes=served.classes,
            title=f"{model} v{number}: {len(current):,} of {logged.num_rows:,} predictions "
            f"against {len(served.reference):,} reference rows",
        )
        files = report.save(built, out_dir)
        drift = checks.drift(built.drift, cfg.slo.max_drift_share)
        report_skipped = built.quality_skipped
    quality = checks.quality(
        served.dataset.task,
        labels.y,
        scored,
        dict(cfg.slo.quality_floor),
        minimum,
        served.classes,
    )
    quality = replace(quality, feedback=labels.counts, report_skipped=report_skipped or None)
    estimate = _estimate(cfg, served, logged, window, quality)
    if too_few:
        attribution = checks.AttributionCheck.skipped(too_few)
    else:
        attribution = _attribution(cfg, served, window)
    slo = checks.slo(requests(cfg.paths.logs, model, window), cfg.slo)
    files["verdict"] = storage.join(out_dir, VERDICT)
    verdict = Verdict(
        model=model,
        version=number,
        window=window,
        rows=logged.num_rows,
        reference_rows=len(served.reference),
        files=files,
        judgement=checks.verdict(
            {
                Check.drift: drift,
                Check.quality: quality,
                Check.estimate: estimate,
                Check.attribution: attribution,
                Check.slo: slo,
            },
            cfg.monitor,
        ),
    )
    storage.write_json(files["verdict"], verdict.to_json())
    log.info("monitor %s v%s: %s %s", model, number, verdict.status, verdict.reasons)
    return Monitored(model, number, window, logged.num_rows, verdict, out_dir, files)


def _estimate(
    cfg: KeelConfig, served: Served, logged: pa.Table, window: Window, quality: checks.QualityCheck
) -> checks.EstimateCheck:
    """The version's estimator applied to the window: every answered row's score for
    classification; for regression a sample (monitor.current_sample) of the rows' inputs,
    which its error model reads through the version's features."""
    number = served.version.version
    fitted = served.estimator
    if fitted is None:
        return checks.EstimateCheck.skipped(
            f"v{number} has no {File.estimator} (trained before estimation existed, or on fewer "
            f"than {estimation.MIN_ROWS} validation rows): retrain it to estimate its quality"
        )
    if isinstance(fitted, estimation.Calibration):
        if served.multiclass:
            scores = class_probabilities(logged[PROBABILITIES], len(served.classes))
            scores = scores[np.isfinite(scores).all(axis=1)]  # logged without them: unscored
        else:
            scores = logged["prediction"].to_numpy(zero_copy_only=False).astype(np.float64)
        estimated = fitted.estimate(scores)
    else:
        drawn = _logged_inputs(cfg, served, window, cfg.monitor.current_sample)
        features = FeaturePipeline.from_state(served.stored.features())
        prediction = drawn["prediction"].to_numpy(zero_copy_only=False).astype(np.float64)
        estimated = fitted.estimate(features.transform(drawn.drop(["prediction"])), prediction)
    floor = dict(cfg.slo.estimated_quality_floor)
    return checks.estimate(estimated, floor, cfg.monitor.min_rows, quality)


def _attribution(cfg: KeelConfig, served: Served, window: Window) -> checks.AttributionCheck:
    """The version explains as many of the window's logged rows as training explained of its
    reference (same baseline, method and steps), and each column's share of the explanation
    is compared with the reference's (bundle.File.explanation)."""
    # torch and Captum: only a run that explains pays them (describe, latest_verdict need none)
    from keel.serving.predictor import Predictor
    from keel.training import explained as explanations

    number = served.version.version
    stored = served.stored.explanation()
    if stored is None:
        return checks.AttributionCheck.skipped(
            f"v{number} has no {File.explanation} (trained before explanations existed): "
            "retrain it to compare its explanations"
        )
    drawn = _logged_inputs(cfg, served, window, int(stored["rows"]))
    predictor = Predictor.load(served.stored.registry, served.version.model, number, device="cpu")
    explained, now = explanations.importance(
        predictor.family,
        predictor.model,
        predictor.head,
        predictor.features,
        predictor.features.transform(drawn.drop(["prediction"])),
        predictor.baseline,
        cfg.serve.explain.steps,
        predictor.dataset.target,
    )
    return checks.attribution(
        stored["importance"], now, drawn.num_rows, explained, cfg.slo.max_attribution_shift
    )


def _logged_inputs(cfg: KeelConfig, served: Served, window: Window, rows: int) -> pa.Table:
    """A sample of `rows` of the window's logged rows: the raw columns the version's features
    read, by their dataset names, and the prediction."""
    names = {logged_name(c): c for c in served.inputs}
    number, seed = served.version.version, cfg.seed
    columns = [*names, "prediction"]
    drawn = sample(cfg.paths.logs, served.version.model, number, window, columns, rows, seed)
    drawn = _sample(drawn, rows, seed).select(columns)
    return drawn.rename_columns([*names.values(), "prediction"])


def _labeled(
    served: Served, logged: pa.Table, labels: Labels, scored: np.ndarray
) -> pd.DataFrame | None:
    """The labeled rows' prediction and label (and, for multiclass, their class probabilities:
    `scored`'s rows): what the quality report compares."""
    if len(labels.index) == 0:
        return None
    frame = logged.select(["prediction"]).take(pa.array(labels.index)).to_pandas()
    frame["label"] = labels.y
    if served.multiclass:
        frame[PROBABILITIES] = pd.Series(list(scored), index=frame.index, dtype=object)
    return frame


def latest_verdict(reports: str, model: str) -> tuple[str, Verdict] | None:
    """The newest verdict written for a model: (its path, the verdict)."""
    root = storage.join(reports, model, "monitor")
    if not storage.exists(root):
        return None
    runs = sorted(i.base_name for i in storage.list_dir(root) if i.type.name == "Directory")
    for run in reversed(runs):  # FileInfo.path has no scheme: rebuild the URI from its name
        path = storage.join(root, run, VERDICT)
        if storage.exists(path):
            return path, Verdict.from_json(storage.read_json(path), path)
    return None


def describe(m: Monitored) -> list[tuple[str, str]]:
    v = m.verdict
    rows = [
        ("verdict", v.status.upper() + ("  (retraining asked)" if v.retrain else "")),
        ("window", f"{m.window.start:%Y-%m-%d %H:%M:%S} .. {m.window.end:%H:%M:%S} UTC"),
        ("rows", f"{m.rows:,} predictions of v{m.version}"),
    ]
    for name, outcome in v.checks.items():
        rows.append((name.value, _summary(outcome)))
    if (estimate := v.estimate) is not None and estimate.status is not checks.SKIPPED:
        rows.append(("estimate note", estimate.blind_to))
    rows += [(f"reason {i + 1}", why) for i, why in enumerate(v.reasons)]
    rows += [(f"file {k}", path) for k, path in m.files.items()]
    return rows


def _summary(check: checks.Outcome) -> str:
    if check.status is checks.SKIPPED:
        return f"skipped: {check.reason}"
    head = check.status.value
    if isinstance(check, checks.DriftCheck):
        cols = ", ".join(check.drifted_columns) or "none"
        return f"{head}: {check.share:.0%} of columns drifted ({cols})"
    if isinstance(check, checks.QualityCheck):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in check.metrics.items())
        if check.per_class_recall is not None:  # multiclass
            recalls = ", ".join(f"{c} {r:.4f}" for c, r in check.per_class_recall.items())
            shown += f"; recall per class: {recalls}"
        unscored = check.unscored
        extra = f", {unscored:,} logged without class probabilities" if unscored else ""
        no_report = f"; no quality report: {why}" if (why := check.report_skipped) else ""
        return (
            f"{head}: {shown} on {check.labeled:,} labels{extra} (feedback {check.feedback})"
            f"{no_report}"
        )
    if isinstance(check, checks.EstimateCheck):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in check.metrics.items())
        real = check.realized
        beside = f"; realized {', '.join(f'{k} {v:.4f}' for k, v in real.items())}" if real else ""
        return (
            f"{head}: {shown} estimated without labels ({check.method}, {check.rows:,} "
            f"predictions){beside}{f'; {why}' if (why := check.disagreement) else ''}"
        )
    if isinstance(check, checks.AttributionCheck):
        return f"{head}: {check.headline()} ({check.rows:,} predictions explained)"
    if isinstance(check, checks.SloCheck):
        p99, explain = check.latency_p99_ms, check.explain_latency_p99_ms
        explained = "" if explain is None else f", explain p99 {explain:.1f} ms"
        return (
            f"{head}: {check.requests:,} requests, p99 "
            f"{'-' if p99 is None else f'{p99:.1f} ms'}{explained}, errors "
            f"{check.error_rate:.2%}, invalid {check.invalid_rate:.2%}"
        )
    return f"{head}: {'; '.join(check.failures)}"

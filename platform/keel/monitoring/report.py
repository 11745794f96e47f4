"""The monitoring report of a window: keel's drift verdict and page, and Evidently's quality
report (and, on request, Evidently's own drift report) beside them.

Evidently takes seconds to import, so it is imported inside the functions that use it: a run
without labels and without `monitor.evidently_report` never imports it. Column types come from
the dataset's ColumnSpecs, never from Evidently's inference (which turns an int column with few
values into a category and a mostly-unique string column into text).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel import storage
from keel.config.schema import ColumnSpec, MonitorConfig, Task
from keel.prediction_log import PROBABILITIES

from . import drift as drifts
from . import page, summary
from .drift import CATEGORICAL, NUMERICAL, PREDICTION, ColumnDrift, DriftResult
from .logs import class_probabilities

LABEL = "label"
REPORT = "report"  # keel's page and JSON: report.html, report.json
QUALITY, EVIDENTLY = "quality", "evidently"  # Evidently snapshots' file stems


@dataclass
class Report:
    drift: DriftResult
    columns: dict[str, summary.Column]  # what the page shows of each compared column
    html: str  # keel's page
    snapshots: dict[str, Any]  # Evidently Snapshots by file stem: quality, evidently
    quality_skipped: str | None = None  # why labeled rows got no quality snapshot

    def to_dict(self) -> dict[str, Any]:
        """report.json: the drift verdict per column and what the page shows of each."""
        d = self.drift
        return {
            "drift": {
                "columns": {c: r.to_json() for c, r in d.columns.items()},
                "prediction": d.prediction and d.prediction.to_json(),
                "share": d.share,
            },
            "columns": {c: s.to_dict() for c, s in self.columns.items()},
        }


def build(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    task: Task,
    monitor: MonitorConfig,
    labeled: pd.DataFrame | None = None,
    drift_share: float = 0.5,
    classes: list = (),
    title: str = "drift report",
) -> Report:
    """Drift of the inputs and of the prediction (current against reference), a summary of both,
    and, given labeled rows, the model's quality on them next to its quality on the reference
    (multiclass: from the rows' class probabilities, `classes` naming them).

    Input columns that are all null on either side cannot be compared: they are left out of
    `DriftResult.columns` and of its share (the summary still shows them). `drift_share` is
    the share of drifted columns at which the report calls the dataset drifted (keel passes
    slo.max_drift_share so the report and the verdict agree).
    """
    kinds = drifts.kinds_of(columns)
    extra = [PREDICTION] if PREDICTION in current and PREDICTION in reference else []
    cur, ref = (drifts.frame(df, columns, extra) for df in (current, reference))
    result = drifts.compare(cur, ref, columns, monitor)
    shown = {c: summary.column(ref[c], cur[c], kinds.get(c, NUMERICAL)) for c in [*kinds, *extra]}
    snapshots = {}
    if monitor.evidently_report:
        snapshots[EVIDENTLY] = _evidently_drift(cur, ref, columns, monitor, result, drift_share)
    quality, skipped = _quality(labeled, reference, Task(task), list(classes))
    if quality is not None:
        snapshots[QUALITY] = quality
    html = page.render(title, result, shown, drift_share)
    return Report(result, shown, html, snapshots, skipped)


def save(report: Report, out_dir: str) -> dict[str, str]:
    """Write report.html/report.json (and quality.html/quality.json, evidently.html/
    evidently.json) under a local or pyarrow URI directory; returns their paths as html, json
    (and quality_html, quality_json, evidently_html, evidently_json)."""
    files = {"html": storage.join(out_dir, f"{REPORT}.html")}
    storage.write_text(files["html"], report.html)
    files["json"] = storage.join(out_dir, f"{REPORT}.json")
    storage.write_json(files["json"], report.to_dict())
    for stem, snapshot in report.snapshots.items():
        # the strings save_html/save_json write (they write nothing when given a Path)
        for ext, text in (
            ("html", snapshot.get_html_str(as_iframe=False)),
            ("json", snapshot.json()),
        ):
            files[f"{stem}_{ext}"] = path = storage.join(out_dir, f"{stem}.{ext}")
            storage.write_text(path, text)
    return files


# ----------------------------------------------------------------------------- Evidently's drift


def _evidently_drift(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    monitor: MonitorConfig,
    result: DriftResult,
    drift_share: float,
) -> Any:
    """Evidently's DataDriftPreset and summary of the same columns with the same configured
    tests: its interactive report, beside keel's verdict (which it agrees with; a test holds
    them to it)."""
    from evidently import Report as Evidently
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DatasetStats, ValueStats
    from evidently.presets.dataset_stats import ValueStatsTests

    kinds = drifts.kinds_of(columns)
    tests = drifts.column_tests(kinds, monitor)
    predicted = drifts.test_of(monitor.prediction_drift, "monitor.prediction_drift", NUMERICAL)
    checked = list(result.columns)
    extra = [PREDICTION] if result.prediction is not None else []
    definition = _definition(
        numerical=[*(c for c in kinds if kinds[c] == NUMERICAL), *extra],
        categorical=[c for c in kinds if kinds[c] == CATEGORICAL],
    )
    methods = {c: tests[c].method.name for c in checked if tests[c].method}
    thresholds = {c: tests[c].threshold for c in checked if tests[c].threshold is not None}
    # DataSummaryPreset's content (DatasetStats, then ValueStats per column) without its default
    # tests, which expect the window to look like the reference to within 10% (row count, every
    # mean and quantile): noise here. Each test list is given as [] because
    # DataSummaryPreset(include_tests=False) fails to render (it looks metrics up by other ids).
    no_tests = {f.name: [] for f in fields(ValueStatsTests)}
    report = Evidently(
        [
            DataDriftPreset(
                columns=checked,
                drift_share=drift_share,
                per_column_method=methods or None,
                per_column_threshold=thresholds or None,
            ),
            *(
                ValueDrift(
                    column=c,
                    method=predicted.method and predicted.method.name,
                    threshold=predicted.threshold,
                )
                for c in extra
            ),
            DatasetStats(include_tests=False),
            *(ValueStats(c, **no_tests) for c in [*kinds, *extra]),
        ],
        include_tests=True,  # the per-column drift tests carry Evidently's drifted flag
    )
    return report.run(_dataset(cur, definition), _dataset(ref, definition))


def drift_results(result: dict[str, Any]) -> dict[str, ColumnDrift]:
    """Column -> method, score, threshold and drifted, from an Evidently snapshot's ValueDrift
    metrics and their drift tests (FAIL = drift detected)."""
    from evidently.legacy.calculations import stattests

    tests = [t for t in vars(stattests).values() if isinstance(t, stattests.StatTest)]
    names = {t.display_name: t.name for t in tests}
    status = {t["metric_config"]["metric_id"]: t["status"] for t in result["tests"]}
    return {
        m["config"]["column"]: ColumnDrift(
            # auto-chosen methods come back by display name ("K-S p_value"), given ones by name
            method=names.get(m["config"]["method"], m["config"]["method"]),
            score=float(m["value"]),
            threshold=float(m["config"]["threshold"]),
            drifted=status[m["id"]] == "FAIL",
        )
        for m in result["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }


# ----------------------------------------------------------------------------- data


def _definition(numerical: list[str], categorical: list[str], **tasks: Any) -> Any:
    """A DataDefinition with every column list given, so Evidently infers nothing."""
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=numerical,
        categorical_columns=categorical,
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
        **tasks,
    )


def _dataset(frame: pd.DataFrame, definition: Any) -> Any:
    from evidently import Dataset

    return Dataset.from_pandas(frame, data_definition=definition)


# ----------------------------------------------------------------------------- quality


def _quality(
    labeled: pd.DataFrame | None, reference: pd.DataFrame, task: Task, classes: list
) -> tuple[Any | None, str | None]:
    """Classification or regression quality on the labeled rows (the reference's next to it
    when it has labels): a separate snapshot whose current data are the labeled rows only, or
    None and why not."""
    if labeled is None or labeled.empty:
        return None, None
    from evidently import BinaryClassification, MulticlassClassification, Regression
    from evidently import Report as Evidently
    from evidently.presets import ClassificationPreset, RegressionPreset

    if task is Task.multiclass_classification:
        # Evidently fails (KeyError, sklearn's roc_auc) on a class without a labeled row
        names = _class_columns(len(classes))
        cur = _class_frame(labeled, len(classes))
        if missing := [c for c, n in zip(classes, names, strict=True) if n not in set(cur[LABEL])]:
            why = (
                f"no labeled row with class {', '.join(map(str, missing))} among {len(cur)} "
                "scored ones: Evidently's multiclass report needs every class"
            )
            return None, why
        ref = _class_frame(reference, len(classes))
        if not set(names) <= set(ref[LABEL]):
            ref = ref.iloc[:0]  # the reference lacks a class, or its probabilities
        definition = _definition(
            names,
            [LABEL],
            classification=[
                MulticlassClassification(
                    target=LABEL,
                    prediction_probas=names,
                    labels=dict(zip(names, map(str, classes), strict=True)),
                )
            ],
        )
        preset = ClassificationPreset()
    elif task is Task.binary_classification:
        definition = _definition(
            [PREDICTION],
            [LABEL],
            classification=[
                BinaryClassification(target=LABEL, prediction_probas=PREDICTION, pos_label=1)
            ],
        )
        preset = ClassificationPreset()
        cur = _labeled(labeled, task)
        ref = _labeled(reference, task) if LABEL in reference else None
    else:
        definition = _definition(
            [LABEL, PREDICTION], [], regression=[Regression(target=LABEL, prediction=PREDICTION)]
        )
        preset = RegressionPreset()
        cur = _labeled(labeled, task)
        ref = _labeled(reference, task) if LABEL in reference else None
    snapshot = Evidently([preset]).run(
        _dataset(cur, definition), None if ref is None or ref.empty else _dataset(ref, definition)
    )
    return snapshot, None


def _labeled(df: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Label and prediction of the rows that have both; binary labels as int 0/1."""
    out = df[[LABEL, PREDICTION]].dropna()
    if task is Task.binary_classification:
        out[LABEL] = out[LABEL].astype("int64")
    return out


def _class_columns(k: int) -> list[str]:
    """The multiclass snapshot's column per class probability, named by class index: the
    label column holds the same names, and a class label could clash with another column."""
    return [str(i) for i in range(k)]


def _class_frame(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """The label (class index as text) and one column per class probability of the rows that
    have a label and all k probabilities; no rows when the frame has no probabilities."""
    names = _class_columns(k)
    if LABEL not in df or PROBABILITIES not in df:
        return pd.DataFrame({**{n: [] for n in names}, LABEL: []})
    proba = class_probabilities(pa.array(df[PROBABILITIES], pa.list_(pa.float64())), k)
    label = df[LABEL].to_numpy(np.float64)
    keep = np.isfinite(label) & np.isfinite(proba).all(axis=1)
    out = pd.DataFrame(proba[keep], columns=names)
    out[LABEL] = label[keep].astype(np.int64).astype(str)
    return out

"""Drift and quality reports: the only module in keel that touches Evidently.

Evidently takes seconds to import, so it is imported inside the functions that use it. Column
types come from the dataset's ColumnSpecs, never from Evidently's inference (which turns an int
column with few values into a category and a mostly-unique string column into text). Drift
verdicts are Evidently's own: its per-column drift test knows whether the method's score is a
p-value (drift when low) or a distance (drift when high).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel import storage
from keel.config.schema import ColumnSpec, ColumnType, DriftSpec, MonitorConfig, Task
from keel.errors import ConfigError
from keel.prediction_log import PROBABILITIES

from .logs import class_probabilities

PREDICTION, LABEL = "prediction", "label"
NUMERICAL, CATEGORICAL = "num", "cat"  # Evidently's names for the two kinds of drift column
KIND = {
    ColumnType.int: NUMERICAL,
    ColumnType.float: NUMERICAL,
    ColumnType.category: CATEGORICAL,
    ColumnType.string: CATEGORICAL,
    ColumnType.bool: CATEGORICAL,
}  # timestamps have no drift test and are left out
_FILES = ("report", "quality")  # file stem of each snapshot, in Report.snapshots order


@dataclass
class DriftResult:
    columns: dict[str, dict]  # input column -> {"method", "score", "threshold", "drifted"}
    prediction: dict | None  # the same for the "prediction" column (None when absent)
    share: float  # drifted input columns / checked input columns


@dataclass
class Report:
    drift: DriftResult
    snapshots: list  # Evidently Snapshots: the drift report, then quality when labels were given
    quality_skipped: str | None = None  # why labeled rows got no quality snapshot


def build(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    task: Task,
    monitor: MonitorConfig,
    labeled: pd.DataFrame | None = None,
    drift_share: float = 0.5,
    classes: list = (),
) -> Report:
    """Drift of the inputs and of the prediction (current against reference), a summary of both,
    and, given labeled rows, the model's quality on them next to its quality on the reference
    (multiclass: from the rows' class probabilities, `classes` naming them).

    Input columns that are all null on either side cannot be compared: they are left out of
    `DriftResult.columns` and of its share (the summary still shows them). `drift_share` is
    the share of drifted columns at which the HTML calls the dataset drifted (keel passes
    slo.max_drift_share so the report and the verdict agree).
    """
    from evidently import Report as Evidently
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DatasetStats, ValueStats
    from evidently.presets.dataset_stats import ValueStatsTests

    kinds = {c: KIND[ColumnType(s.type)] for c, s in columns.items() if ColumnType(s.type) in KIND}
    methods, thresholds = _column_tests(kinds, monitor)
    pred_method, pred_threshold = _test(
        monitor.prediction_drift, "monitor.prediction_drift", NUMERICAL
    )
    extra = [PREDICTION] if PREDICTION in current and PREDICTION in reference else []
    cur, ref = (_frame(df, columns, kinds, extra) for df in (current, reference))
    checked = [c for c in kinds if cur[c].notna().any() and ref[c].notna().any()]
    definition = _definition(
        numerical=[*(c for c in kinds if kinds[c] == NUMERICAL), *extra],
        categorical=[c for c in kinds if kinds[c] == CATEGORICAL],
    )
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
                per_column_method={c: methods[c] for c in checked if c in methods} or None,
                per_column_threshold={c: thresholds[c] for c in checked if c in thresholds} or None,
            ),
            *(ValueDrift(column=c, method=pred_method, threshold=pred_threshold) for c in extra),
            DatasetStats(include_tests=False),
            *(ValueStats(c, **no_tests) for c in [*kinds, *extra]),
        ],
        include_tests=True,  # the per-column drift tests carry Evidently's drifted flag
    )
    snapshot = report.run(_dataset(cur, definition), _dataset(ref, definition))
    results = drift_results(snapshot.dict())
    prediction = results.pop(PREDICTION, None)
    share = sum(r["drifted"] for r in results.values()) / len(results) if results else 0.0
    snapshots = [snapshot]
    quality, skipped = _quality(labeled, reference, Task(task), list(classes))
    if quality is not None:
        snapshots.append(quality)
    return Report(DriftResult(results, prediction, share), snapshots, skipped)


def save(report: Report, out_dir: str) -> dict[str, str]:
    """Write report.html/report.json (and quality.html/quality.json) under a local or pyarrow
    URI directory; returns their paths as html, json (and quality_html, quality_json)."""
    files = {}
    for stem, snapshot in zip(_FILES, report.snapshots, strict=False):
        # the strings save_html/save_json write (they write nothing when given a Path)
        for ext, text in (
            ("html", snapshot.get_html_str(as_iframe=False)),
            ("json", snapshot.json()),
        ):
            path = storage.join(out_dir, f"{stem}.{ext}")
            storage.write_text(path, text)
            files[ext if stem == _FILES[0] else f"{stem}_{ext}"] = path
    return files


# ----------------------------------------------------------------------------- drift tests


@cache
def _stattests() -> dict[str, Any]:
    """Evidently's drift methods for numerical or categorical columns, by name."""
    from evidently.legacy.calculations import stattests

    return {
        t.name: t
        for t in vars(stattests).values()
        if isinstance(t, stattests.StatTest)
        and {NUMERICAL, CATEGORICAL} & {k.value for k in t.allowed_feature_types}
    }


def _test(
    spec: DriftSpec, key: str, kind: str, column: str = PREDICTION
) -> tuple[str | None, float | None]:
    """A spec's (method, threshold), checked against Evidently's registry before anything runs.
    A named method without a threshold gets that method's default threshold."""
    if spec.method is None:
        return None, spec.threshold
    known = _stattests()
    test = known.get(spec.method)
    if test is None:
        raise ConfigError(
            f"{key}.method: unknown drift method '{spec.method}'; known: {', '.join(sorted(known))}"
        )
    if kind not in {k.value for k in test.allowed_feature_types}:
        word = "numerical" if kind == NUMERICAL else "categorical"
        hint = f"; override it under monitor.columns.{column}" if key == "monitor.drift" else ""
        raise ConfigError(
            f"{key}.method: drift method '{spec.method}' does not apply to {word} column "
            f"'{column}'{hint}"
        )
    return spec.method, test.default_threshold if spec.threshold is None else spec.threshold


def _column_tests(
    kinds: dict[str, str], monitor: MonitorConfig
) -> tuple[dict[str, str], dict[str, float]]:
    """Each input column's method and threshold: its monitor.columns entry over monitor.drift.

    An entry that names a method gets that method's default threshold rather than
    monitor.drift.threshold: a p-value cutoff is no distance cutoff.
    """
    if unknown := sorted(set(monitor.columns) - set(kinds)):
        raise ConfigError(
            f"monitor.columns.{unknown[0]}: not a monitored input column; "
            f"monitored: {', '.join(kinds)}"
        )
    methods, thresholds = {}, {}
    for column, kind in kinds.items():
        own = monitor.columns.get(column) or DriftSpec()
        if own.method is not None:
            spec, key = own, f"monitor.columns.{column}"
        else:
            threshold = monitor.drift.threshold if own.threshold is None else own.threshold
            spec, key = DriftSpec(monitor.drift.method, threshold), "monitor.drift"
        method, threshold = _test(spec, key, kind, column)
        if method is not None:
            methods[column] = method
        if threshold is not None:
            thresholds[column] = threshold
    return methods, thresholds


def drift_results(result: dict[str, Any]) -> dict[str, dict]:
    """Column -> method, score, threshold and drifted, from a snapshot's ValueDrift metrics and
    their drift tests (FAIL = drift detected)."""
    names = {t.display_name: name for name, t in _stattests().items()}
    status = {t["metric_config"]["metric_id"]: t["status"] for t in result["tests"]}
    return {
        m["config"]["column"]: {
            # auto-chosen methods come back by display name ("K-S p_value"), given ones by name
            "method": names.get(m["config"]["method"], m["config"]["method"]),
            "score": float(m["value"]),
            "threshold": float(m["config"]["threshold"]),
            "drifted": status[m["id"]] == "FAIL",
        }
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


def _frame(
    df: pd.DataFrame, columns: dict[str, ColumnSpec], kinds: dict[str, str], extra: list[str]
) -> pd.DataFrame:
    """The compared columns (and the prediction), sharing df's data where no cast is needed.
    Categorical values become str (bools, pandas categoricals, numeric codes) so both sides
    compare equal labels; nulls stay null."""
    out = {}
    for c, kind in kinds.items():
        s = df[c]
        if kind == CATEGORICAL and (
            ColumnType(columns[c].type) is ColumnType.bool or s.dtype != object
        ):
            s = s.astype(object).map(str, na_action="ignore")
        out[c] = s
    return pd.DataFrame({**out, **{c: df[c] for c in extra}}, copy=False)


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

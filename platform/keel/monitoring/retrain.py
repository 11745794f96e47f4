"""`keel retrain`: train a challenger on the original data plus recent labeled production rows,
judge champion and challenger on the same recent holdout, promote only a clear winner.

Runs when the latest monitor verdict asks for it (or when forced). The challenger is trained
with the champion's own dataset, features, model and train config (`monitor.retrain.model`
names another model config, another family's too; command-line overrides of those groups
still win). Recent rows count `monitor.retrain.recent_weight` times; a share of
them (`holdout`, chosen by a hash of the request id) is never trained on and judges both
models. The challenger is promoted when it beats the champion's primary metric by
`monitor.retrain.margin` and meets `slo.quality_floor`; replicas that follow the production
stage then load it beside the old one and switch without dropping a request. Every run writes
`<reports>/<model>/retrain/<run>/decision.json` (decision.py) with the numbers and the reason.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf

from keel import prediction_log as plog
from keel import storage
from keel.config import KeelConfig, from_dict, group_option, to_dict
from keel.config.schema import SourceConfig, SourceFormat, Task
from keel.data.sources import PATH_COLUMN, read
from keel.data.split import key_position
from keel.prediction_log import logged_name
from keel.quality import PRIMARY, better
from keel.registry import PromotionRefused, Registry, check_floor
from keel.registry.bundle import Stored
from keel.serving.predictor import Predictor
from keel.targets import Unknown, class_index, decode, encode
from keel.training.dataset import prepare
from keel.training.metrics import evaluate
from keel.training.run import train

from .decision import DECISION, Contender, Decision, RetrainData, Trigger
from .logs import Window, join_feedback, predictions
from .monitor import Served, latest_verdict

log = logging.getLogger(__name__)

TRAINED_GROUPS = ("dataset", "features", "model", "train")  # what makes a champion


def retrain(cfg: KeelConfig, overrides: list[str] = (), force: bool = False) -> Decision:
    model = cfg.dataset.name
    registry = Registry(cfg.paths.registry)
    champion = registry.get(model, "production")
    trigger = _trigger(cfg, model, force)
    decision = Decision(model, Contender(champion.version), trigger)
    out = storage.join(cfg.paths.reports, model, "retrain", storage.stamp())
    if not trigger.run:
        return _decide(decision, out, False, trigger.why)

    served = Served.load(registry, champion)
    settings = cfg.monitor.retrain
    window = _window(cfg, trigger)
    recent = _recent_labeled(cfg, model, served, window)
    decision.data = RetrainData(recent.num_rows, window.start.isoformat())
    if recent.num_rows < settings.min_labeled:
        why = (
            f"only {recent.num_rows} labeled production rows since {window.start:%Y-%m-%d %H:%M}"
            f" UTC; monitor.retrain.min_labeled is {settings.min_labeled}: post feedback labels"
            " first"
        )
        return _decide(decision, out, False, why)
    holdout_mask = _holdout(recent["request_id"], settings.holdout, cfg.seed)
    holdout, fresh = recent.filter(holdout_mask), recent.filter(pc.invert(holdout_mask))
    challenger_cfg = _challenger_config(cfg, Stored(registry, champion).config(), overrides)
    ds = challenger_cfg.dataset
    original = _original_rows(ds, settings.original_fraction, cfg.seed)
    rows = _combined(original, fresh.drop_columns(["request_id"]), settings.recent_weight)
    data_file = storage.join(cfg.paths.data, "retrain", model, f"{storage.stamp()}.parquet")
    storage.write_bytes(data_file, storage.parquet_bytes(rows))
    decision.data = dataclasses.replace(
        decision.data,
        original=original.num_rows,
        recent_train=fresh.num_rows,
        holdout=holdout.num_rows,
        recent_weight=settings.recent_weight,
        file=data_file,
    )
    challenger_cfg = dataclasses.replace(
        challenger_cfg,
        dataset=dataclasses.replace(
            ds,
            source=SourceConfig(format=SourceFormat.parquet, path=data_file),
            columns=_retrain_columns(ds),
            # Replayed traffic repeats the ids of the champion's test split: under the same
            # seed every recent row would land in test again and the challenger train on none.
            split=dataclasses.replace(ds.split, seed=ds.split.seed + 1),
        ),
    )
    log.info("training a challenger for %s on %s", model, data_file)
    data = prepare(challenger_cfg)
    # the drift reference of a retrained version is the traffic it was retrained for
    data = dataclasses.replace(data, reference=fresh.drop_columns(["request_id"]))
    trained = train(challenger_cfg, data)
    challenger = trained.version
    decision.challenger = Contender(challenger.version, test=trained.metrics["test"])

    task = Task(ds.task)
    primary = PRIMARY[task]
    y = _encoded_target(holdout[ds.target], task, served.classes)
    for contender in (decision.champion, decision.challenger):
        contender.holdout = _holdout_metrics(
            registry, model, contender.version, holdout, task, y, served.classes
        )
    ch, cp = decision.challenger.holdout[primary], decision.champion.holdout[primary]
    floor = dict(cfg.slo.quality_floor)
    decision.primary, decision.margin, decision.floor = primary, settings.margin, floor
    missed = check_floor({"test": decision.challenger.holdout}, floor)
    if not better(primary, ch, cp, settings.margin):
        why = (
            f"challenger v{challenger.version} {primary} {ch:.4f} does not beat champion "
            f"v{champion.version} {cp:.4f} by monitor.retrain.margin {settings.margin} "
            "on the recent holdout"
        )
        return _decide(decision, out, False, why)
    if missed:
        why = "challenger misses the SLO floor: " + "; ".join(missed)
        return _decide(decision, out, False, why)
    why = (
        f"challenger v{challenger.version} {primary} {ch:.4f} beats champion "
        f"v{champion.version} {cp:.4f} (margin {settings.margin}) on a holdout of "
        f"{holdout.num_rows} recent labeled rows"
    )
    try:
        registry.promote(model, challenger.version, floor=floor, reason=f"retrain: {why}")
    except PromotionRefused as e:
        return _decide(decision, out, False, str(e).splitlines()[0])
    return _decide(decision, out, True, why)


def _decide(decision: Decision, out: str, promoted: bool, reason: str) -> Decision:
    path = storage.join(out, DECISION)
    decision = dataclasses.replace(
        decision, promoted=promoted, reason=reason, at=storage.stamp(), path=path
    )
    storage.write_json(path, decision.to_json())
    log.info("retrain %s: %s (%s)", decision.model, "promoted" if promoted else "kept", reason)
    return decision


def _window(cfg: KeelConfig, trigger: Trigger) -> Window:
    """monitor.retrain.window back from now; unset: from the start of the verdict's window."""
    if cfg.monitor.retrain.window:
        return Window.last(cfg.monitor.retrain.window)
    if trigger.window is not None:
        return Window(trigger.window.start, plog.now())
    return Window.last(cfg.monitor.window)


def _trigger(cfg: KeelConfig, model: str, force: bool) -> Trigger:
    latest = latest_verdict(cfg.paths.reports, model)
    path, window = (latest[0], latest[1].window) if latest else (None, None)
    if force:
        return Trigger(True, "forced (--force)", path, window)
    if latest is None:
        why = f"no monitor verdict for {model} yet: run keel monitor first, or pass --force"
        return Trigger(False, why, path, window)
    asked = latest[1].retrain
    why = "; ".join(latest[1].reasons) if asked else "the latest verdict does not ask for it"
    return Trigger(asked, why + ("" if asked else " (pass --force to retrain)"), path, window)


def _recent_labeled(cfg: KeelConfig, model: str, served: Served, window: Window) -> pa.Table:
    """Predictions of any version in the window that got a label: the dataset's columns
    (inputs as the request carried them, the target from the label) plus request_id."""
    ds = served.dataset
    logged = predictions(cfg.paths.logs, model, None, window)
    labels = join_feedback(cfg.paths.logs, model, None, logged, window, ds.task, served.classes)
    rows = logged.take(pa.array(labels.index))
    columns = {"request_id": rows["request_id"]}
    for name in ds.columns:
        if name == ds.target:
            columns[name] = pa.array(decode(labels.y, ds.task, served.classes))
        elif logged_name(name) in rows.column_names:
            columns[name] = rows[logged_name(name)]
    return pa.table(columns)


def _encoded_target(target: pa.ChunkedArray, task: Task, classes: list) -> np.ndarray:
    """Holdout targets as metrics take them. They were decoded from the champion's classes
    (targets.decode), so every one is a class: one that is not is a bug, not data."""
    encoded = encode(target.to_pylist(), task, classes, Unknown.error)
    return encoded if task is Task.regression else encoded.astype(np.int64)


def _holdout(ids: pa.ChunkedArray, share: float, seed: int) -> pa.Array:
    return pa.array(key_position(ids.to_pylist(), f"holdout:{seed}:") < share)


def _challenger_config(cfg: KeelConfig, champion: dict, overrides: list[str]) -> KeelConfig:
    """The champion's trained groups over this run's config (its model, or
    `monitor.retrain.model`'s); `group.key=value` overrides of those groups from the command
    line are applied again on top."""
    merged = OmegaConf.create(to_dict(cfg))
    for group in TRAINED_GROUPS:
        merged[group] = champion[group]
    if cfg.monitor.retrain.model:
        merged["model"] = to_dict(group_option("model", cfg.monitor.retrain.model))
    mine = [
        o.lstrip("+")
        for o in overrides
        if "=" in o
        and o.lstrip("+").split("=")[0].split(".")[0] in TRAINED_GROUPS
        and "." in o.split("=")[0]
    ]
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(mine))
    return from_dict(OmegaConf.to_container(merged, resolve=True))


def _retrain_columns(ds) -> dict:
    """The columns as the retraining file holds them: under their keys (a `source:` name was
    the original file's), and with an id that weighted rows repeat and production rows may
    lack."""
    columns = {name: dataclasses.replace(spec, source=None) for name, spec in ds.columns.items()}
    if ds.id_column:
        columns[ds.id_column] = dataclasses.replace(
            columns[ds.id_column], unique=False, nullable=True
        )
    return columns


def _original_rows(ds, fraction: float, seed: int) -> pa.Table:
    """The champion's raw training source (validation runs again on the combined data)."""
    import ray

    table = pa.concat_tables(ray.get(read(ds).to_arrow_refs()), promote_options="default")
    if PATH_COLUMN in table.column_names:
        table = table.drop_columns([PATH_COLUMN])
    if fraction < 1.0:
        keep = np.random.default_rng(seed).random(table.num_rows) < fraction
        table = table.filter(pa.array(keep))
    return table


def _combined(original: pa.Table, recent: pa.Table, weight: int) -> pa.Table:
    """Original rows, then each recent row `weight` times, in the original's column types."""
    schema = original.schema
    columns = {}
    for field in schema:
        if field.name not in recent.column_names:
            columns[field.name] = pa.nulls(recent.num_rows, field.type)
        elif pa.types.is_timestamp(field.type):
            values = pd.to_datetime(recent[field.name].to_pandas(), errors="coerce", utc=True)
            columns[field.name] = pa.array(values.dt.tz_localize(None), field.type)
        else:
            columns[field.name] = recent[field.name].cast(field.type)
    fresh = pa.table(columns, schema=schema)
    return pa.concat_tables([original, *[fresh] * weight])


def _holdout_metrics(
    registry: Registry,
    model: str,
    version: int,
    rows: pa.Table,
    task: Task,
    y: np.ndarray,
    classes: list,
) -> dict[str, float]:
    """A version's metrics on the holdout, predicted exactly as serving predicts; `y` holds
    indexes of `classes` (the champion's) for classification."""
    predictor = Predictor.load(registry, model, version)
    proba = predictor.predict(rows)
    if task is Task.multiclass_classification:
        proba = _in_class_order(proba, predictor.head.labels, classes)
    return evaluate(task, y, proba)


def _in_class_order(proba: np.ndarray, labels: list, classes: list) -> np.ndarray:
    """A version's class probabilities (columns in its head's `labels` order) as columns of
    `classes`, the order the holdout labels are encoded in. A challenger's head holds the
    classes its training rows held, so the two may differ: a class it lacks gets 0, one the
    champion lacks is dropped and the row renormalized (uniform when nothing is left)."""
    position = class_index(labels, classes)
    known = ~np.isnan(position)
    out = np.zeros((len(proba), len(classes)))
    out[:, position[known].astype(np.int64)] = np.asarray(proba, np.float64)[:, known]
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / len(classes))
    return np.divide(out, total, out=uniform, where=total > 0)


def describe(d: Decision) -> list[tuple[str, str]]:
    rows = [("decision", ("PROMOTED" if d.promoted else "kept the champion") + f": {d.reason}")]
    if d.data is not None:
        rows.append(("data", ", ".join(f"{k} {v}" for k, v in d.data.to_json().items())))
    for role, contender in (("champion", d.champion), ("challenger", d.challenger)):
        if contender is not None and contender.holdout is not None:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in contender.holdout.items())
            rows.append((f"{role} v{contender.version}", f"holdout: {shown}"))
    rows.append(("decision record", d.path or "-"))
    return rows

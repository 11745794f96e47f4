"""The training stage end to end: prepared data -> Ray Train -> evaluate on the test split ->
register a version. A sweep prepares the data once (dataset.py), trains many times and
registers its best trial's weights."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from dataclasses import dataclass

import pyarrow as pa

from keel import storage
from keel.config import KeelConfig, to_dict, to_yaml
from keel.errors import TrainingFailed
from keel.models import score
from keel.models.family import family
from keel.models.infer import probabilities
from keel.prediction_log import PROBABILITIES
from keel.registry import ModelVersion, Registry, register_candidate
from keel.registry.bundle import Bundle, ModelSpec
from keel.registry.lineage import lineage

from . import explained
from .checkpoint import BEST, PROGRESS, discard, keep
from .dataset import Prepared, prepare
from .evaluate import Predict, evaluate, latency_profile, quality_estimator
from .progress import reporter
from .trainer import trainer


@dataclass
class Trained:
    version: ModelVersion
    promoted: bool
    metrics: dict
    history: list[dict]
    latency: dict
    checkpoint_path: str


def fit(cfg: KeelConfig, data: Prepared, name: str, callbacks: list | None = None):
    """Run Ray Train; returns (best model as saved, per-epoch history, checkpoint path)."""
    import ray.train

    train_ds = {"train": data.datasets["train"], "val": data.datasets["val"]}
    in_features = len(data.features.output_columns)
    forward, lines = reporter()
    run = trainer(cfg, train_ds, in_features, data.head, name, [*(callbacks or []), forward])
    in_process = cfg.train.num_workers == 0
    with lines, IN_PROCESS if in_process else contextlib.nullcontext():
        try:
            result = run.fit()
        except ray.train.TrainingFailedError as e:
            raise TrainingFailed(failure(cfg, name, e)) from e
        except Exception as e:
            if not in_process:
                raise
            # local mode raises the loop's own error, where a worker's would come wrapped
            discard(name)
            raise TrainingFailed(
                f"training {name} failed in this process: {_first_line(e)} (train.num_workers=0 "
                "runs Ray Train's local mode, which does not restart); no version was registered"
            ) from e
    checkpoint = result.checkpoint
    if in_process:  # its checkpoint is still local
        checkpoint = keep(checkpoint, storage.join(cfg.paths.checkpoints, name, "checkpoint"))
    return from_checkpoint(cfg, checkpoint)


# Ray Train's local mode keeps a run's context in one global of the process: two runs in
# threads (the tests train side by side) would report into each other's. They take turns.
IN_PROCESS = threading.Lock()


def failure(cfg: KeelConfig, name: str, error: Exception) -> str:
    """What a failed run says: each failed worker's error in one line (Ray's message holds
    their tracebacks, which --verbose logs), what it could not resume from, and that nothing
    was registered."""
    failures = getattr(error, "worker_failures", None) or {}
    causes = [f"worker {rank}: {_first_line(e)}" for rank, e in sorted(failures.items())]
    allowed = cfg.train.max_failures
    return (
        f"training {name} failed: {'; '.join(causes) or _first_line(error)}. It had "
        f"{'no restart' if allowed == 0 else f'{allowed} restart(s)'} to resume from its last "
        f"checkpoint (train.max_failures={allowed}); no version was registered. Its checkpoints "
        f"are under {storage.join(cfg.paths.checkpoints, name)}."
    )


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__


def from_checkpoint(cfg: KeelConfig, checkpoint) -> tuple[bytes, list[dict], str]:
    """A training checkpoint's best model so far (as its family's `save` writes it), its
    per-epoch history, and its path."""
    with checkpoint.as_directory() as d:
        with open(f"{d}/{BEST}", "rb") as f:
            best = f.read()
        with open(f"{d}/{PROGRESS}") as f:
            history = json.load(f)["history"]
    return best, history, storage.same_scheme(cfg.paths.checkpoints, checkpoint.path)


def train(cfg: KeelConfig, data: Prepared | None = None) -> Trained:
    """Train, evaluate and register one model version for cfg.dataset."""
    data = data or prepare(cfg)
    trained = fit(cfg, data, f"{cfg.dataset.name}-{storage.stamp()}")
    return register(cfg, data, *trained)


def register(
    cfg: KeelConfig, data: Prepared, best: bytes, history: list[dict], checkpoint_path: str
) -> Trained:
    """Evaluate a trained model on the test split, profile latency and register a version."""
    model_name = cfg.dataset.name
    fam = family(cfg.model.family)
    spec = ModelSpec(
        model=to_dict(cfg.model),
        in_features=len(data.features.output_columns),
        head=data.head.to_state(),
        input_columns=data.features.input_columns,
        family=fam.name,
    )
    where = storage.join(checkpoint_path, BEST)
    fitted = fam.load(spec.model, spec.in_features, data.head, best, where, "cpu")
    predict = functools.partial(fam.predict, fitted, data.head)
    metrics = evaluate(predict, data.head, data.datasets["test"], cfg.dataset, data.y_train)
    metrics["history"] = history
    registry = Registry(cfg.paths.registry)
    parent = _production(registry, model_name)
    config = to_dict(cfg)
    why = explained.explanation(
        fam, fitted, data.head, data.features, data.reference, cfg.dataset.target, cfg.serve.explain
    )
    bundle = Bundle.with_card(
        model_name,
        config,
        spec=spec,
        weights=fam.save(fitted),
        features=data.features.to_state(),
        config=to_yaml(cfg),
        metrics=metrics,
        lineage=lineage(
            config,
            data_fingerprint=data.fingerprint,
            seed=cfg.train.seed,
            parent=parent,
            rows=len(data.y_train),
        ),
        latency=latency_profile(predict, data.features, data.sample_rows),
        reference=with_predictions(data.reference, predict, data),
        estimator=quality_estimator(
            predict, data.head, data.datasets["val"], data.datasets["test"]
        ),
        explanation=why,
        importance=explained.plot(why["importance"], f"{model_name}: {why['explained']}"),
    )
    mv, promoted = register_candidate(
        registry, model_name, bundle.files(), dict(cfg.slo.quality_floor), parent
    )
    return Trained(mv, promoted, metrics, history, bundle.latency, checkpoint_path)


def with_predictions(rows: pa.Table, predict: Predict, data: Prepared) -> pa.Table:
    """Raw rows plus the model's logged score and class probabilities, as the prediction log
    would hold them: the reference that monitoring compares live traffic (inputs and
    predictions) with, and whose multiclass quality it computes from the probabilities."""
    raw = predict(data.features.transform(rows))
    rows = rows.append_column("prediction", pa.array(score(raw)))
    return rows.append_column(PROBABILITIES, probabilities(raw))


def _production(registry: Registry, model: str) -> int | None:
    return registry.stages(model).production if model in registry.models() else None


def describe(out: Trained) -> list[tuple[str, str]]:
    """Readable lines for a job summary: stage, epochs, metrics vs baseline, slices, paths."""
    m, primary, v = out.metrics, out.metrics["primary_metric"], out.version
    stage = (
        "production (first version passing the SLO floor)"
        if out.promoted
        else f"candidate (promote with: keel registry promote {v.model} {v.version})"
    )
    best = min(h["val_loss"] for h in out.history)
    last = out.history[-1]
    unit = last.get("unit", "epoch")  # trees report every few boosting rounds
    ran = last["epoch"] + 1 if unit == "round" else len(out.history)
    rows = [("stage", stage), (f"{unit}s", f"{ran} (best val_loss {best:.4f})")]
    for name, value in m["test"].items():
        mark = "  <- primary" if name == primary else ""
        rows.append((f"test {name}", f"{value:.4f}   (baseline {m['baseline'][name]:.4f}){mark}"))
    gaps = [
        (g["gap"], f"{col}={val}")
        for col, vals in m["slices"].items()
        for val, g in vals.items()
        if "gap" in g
    ]
    if gaps:
        gap, where = min(gaps)
        rows.append(("worst slice", f"{where}: {primary} {gap:+.4f} vs overall"))
    latency = ", ".join(f"{n} rows {ms:.2f} ms" for n, ms in out.latency["ms_per_batch"].items())
    rows += [("latency", latency), ("registry", v.path), ("checkpoints", out.checkpoint_path)]
    return rows

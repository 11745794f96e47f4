"""Data for training: validate -> split -> fit features on the training split -> encoded Ray
Datasets ({"features", "target"}, plus raw target and slice columns for the test split).

Kept apart from run.py so Ray workers that run `encode` import only what it needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from keel.config import KeelConfig
from keel.data.batch import fingerprint, to_table
from keel.data.split import split
from keel.data.validation import ValidationReport, validate_source
from keel.features import FeaturePipeline
from keel.models import Head

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything training needs, computed once per dataset."""

    validation: ValidationReport
    features: FeaturePipeline
    head: Head
    datasets: dict[str, Any]  # encoded train/val/test Ray Datasets
    y_train: np.ndarray
    fingerprint: str
    sample_rows: list[dict] = field(repr=False)  # raw test rows for the latency profile
    reference: pa.Table = field(repr=False)  # sampled raw training rows: monitoring's reference


def encode(
    batch: pa.Table,
    features: FeaturePipeline,
    head: Head,
    target: str,
    keep: tuple[str, ...] = (),
    raw_target: bool = False,
) -> dict[str, np.ndarray]:
    """Raw rows -> {"features", "target"} (+ the raw target as "y" when evaluation needs it,
    and `keep` columns such as slices)."""
    table = to_table(batch)
    out = features.transform_batch(table, keep)
    y = table.column(target).to_numpy(zero_copy_only=False)
    out["target"] = head.encode(y)
    if raw_target:
        out["y"] = y
    return out


def prepare(cfg: KeelConfig) -> Prepared:
    ds = cfg.dataset
    validated = validate_source(ds, cfg.paths.reports)
    parts = {name: part.materialize() for name, part in split(validated.valid, ds).items()}
    log.info("split %s: %s", ds.name, {k: v.count() for k, v in parts.items()})
    features = FeaturePipeline.from_config(cfg.features).fit(
        parts["train"], cfg.features.batch_size
    )
    y_train = _column(parts["train"], ds.target)
    head = Head.fit(ds.task, y_train)
    common = {"features": features, "head": head, "target": ds.target}
    encoded = {
        name: part.map_batches(
            encode,
            # the test split keeps the raw target and the slice columns for evaluation
            fn_kwargs={
                **common,
                "keep": tuple(ds.slices) if name == "test" else (),
                "raw_target": name == "test",
            },
            batch_format="pyarrow",
            batch_size=cfg.features.batch_size,
        ).materialize()
        for name, part in parts.items()
    }
    return Prepared(
        validation=validated.report,
        features=features,
        head=head,
        datasets=encoded,
        y_train=y_train,
        fingerprint=fingerprint(validated.valid),
        sample_rows=parts["test"].limit(256).take_all(),
        reference=_sample(parts["train"], cfg.monitor.reference_sample, cfg.train.seed),
    )


def _sample(ds, rows: int, seed: int) -> pa.Table:
    """A uniform sample of at most `rows` rows (drawn on the workers, then trimmed)."""
    import ray

    total = ds.count()
    if total > rows:
        ds = ds.random_sample(min(1.0, 1.1 * rows / total), seed=seed)
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")
    return table.slice(0, rows)


def _column(ds, name: str) -> np.ndarray:
    batches = ds.select_columns([name]).iter_batches(batch_format="numpy", batch_size=None)
    return np.concatenate([b[name] for b in batches])

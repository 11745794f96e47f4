"""Batch inference (`keel predict`): the served model's predictions over a dataset, as parquet.

The same Predictor as a Serve replica (features, network, post-processing) runs in Ray Data
`map_batches` actors, one load per actor. Rows are validated first, as online requests are: only
valid rows are predicted and the rest are quarantined with the validation report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from omegaconf import OmegaConf

from keel import runtime
from keel.config import KeelConfig, to_dict
from keel.config.schema import DatasetConfig, PostprocessConfig, SourceFormat
from keel.data import sources
from keel.data.validation import ValidationReport, validate_source
from keel.data.validation import describe as describe_validation
from keel.errors import DataError
from keel.models import infer
from keel.prediction_log import PROBABILITIES
from keel.registry import Registry
from keel.storage import join, resolve, stamp

from .postprocess import Postprocessor
from .predictor import Predictor

log = logging.getLogger(__name__)

WORKER_CPUS = 0.25  # fractional: predicting actors leave room for the read and validation tasks


@dataclass
class BatchResult:
    path: str  # the parquet directory written
    rows: int  # rows predicted (= the valid rows)
    version: str  # e.g. "churn v3"
    ref: str  # what was asked for: a stage or a version number
    validation: ValidationReport
    explained: bool = False  # each row has its explanation (keel predict --explain)


class Scorer:
    """A Ray Data actor: loads one registry version once, then predicts pyarrow batches.

    Takes plain values only (no DictConfig), and a version number rather than a stage, so
    every actor predicts with the same version even if the stage moves during the run.
    """

    def __init__(
        self,
        registry: str,
        model: str,
        version: int,
        postprocess: dict,
        id_column: str | None,
        explain_steps: int | None = None,
    ):
        spec = OmegaConf.merge(OmegaConf.structured(PostprocessConfig), postprocess)
        self.predictor = Predictor.load(
            Registry(registry), model, version, OmegaConf.to_object(spec)
        )
        self.id_column = id_column
        self.explain_steps = explain_steps

    def __call__(self, batch: pa.Table) -> pa.Table:
        return score(self.predictor, batch, self.id_column, self.explain_steps)


def score(
    predictor: Predictor, batch: pa.Table, id_column: str | None, explain_steps: int | None = None
) -> pa.Table:
    """Valid rows -> output rows; columns get explicit types so every block has one schema.
    With `explain_steps`, each row's explanation too, as the served one (serve.explain.steps):
    `explained`, `base` and `attributions` (a struct with a field per input column)."""
    explanations = None
    if explain_steps:
        raw, _, explanations = predictor.explain_rows(batch, explain_steps)
    else:
        raw = predictor.predict(batch)
    raw = np.asarray(raw, np.float64)
    out: dict[str, pa.Array] = {}
    if id_column:
        out[id_column] = batch.column(id_column)
    if raw.ndim == 2:  # multiclass: every class probability, as the prediction log keeps them
        out[PROBABILITIES] = infer.probabilities(raw)
    out["prediction"] = pa.array(infer.score(raw))  # the top one for multiclass
    types = _output_types(predictor.post)
    for name, values in predictor.post.columns(raw).items():
        out[name] = pa.array(values, type=types[name])
    if explanations is not None:
        columns = predictor.features.input_columns
        out["explained"] = pa.array([e["explained"] for e in explanations], pa.string())
        out["base"] = pa.array([e["base"] for e in explanations], pa.float64())
        kind = pa.struct([(c, pa.float64()) for c in columns])
        out["attributions"] = pa.array([e["attributions"] for e in explanations], kind)
    mv = predictor.version
    out["model"] = pa.array([mv.model] * len(raw), pa.string())
    out["version"] = pa.array(np.full(len(raw), mv.version, np.int64))
    return pa.table(out)


def _output_types(post: Postprocessor) -> dict[str, pa.DataType]:
    label = pa.array(post.names).type if post.names else pa.string()
    top = pa.struct([("label", label), ("probability", pa.float64())])
    return {
        "label": label,
        "value": pa.float64(),
        "top_k": pa.list_(top),
        "rules": pa.list_(pa.string()),
    }


def scoring_schema(dataset: DatasetConfig) -> DatasetConfig:
    """The dataset's schema for scoring files: data to predict usually has no target yet, so a
    file source without the target column is read and validated without it."""
    src = dataset.source
    if src.format == SourceFormat.synthetic:
        return dataset
    first = sources.list_files(src.path, src.format)[0]
    if sources.file_names(dataset)[dataset.target] in sources.header(first, src.format):
        return dataset
    columns = {n: c for n, c in dataset.columns.items() if n != dataset.target}
    return replace(dataset, columns=columns)


def predict_dataset(cfg: KeelConfig, explain: bool = False) -> BatchResult:
    """Validate cfg.dataset's source, predict its valid rows with the served version of the
    dataset's model, and write them under {paths.root}/predictions/{model}/v{N}-{stamp}/;
    `explain`: with each row's explanation (see `score`)."""
    import ray

    model = cfg.dataset.name
    served = cfg.serve.models.get(model)
    ref = served.version if served else "production"
    spec = served.postprocess if served else PostprocessConfig()
    registry = Registry(cfg.paths.registry)
    # Loaded here too, so a bad version or post-processing config fails before any data moves;
    # its number is then pinned for every worker.
    predictor = Predictor.load(registry, model, ref, spec, device="cpu")
    pinned = predictor.version
    if explain:
        predictor.check_explainable()
    dataset = scoring_schema(cfg.dataset)
    missing = [c for c in predictor.features.input_columns if c not in dataset.columns]
    if missing:
        raise DataError(
            f"{pinned.label} needs column(s) {missing} that dataset '{dataset.name}' does not "
            f"declare (dataset.columns: {list(dataset.columns)})"
        )
    runtime.ensure(cfg)  # after the checks above: a wrong version fails without starting Ray
    validated = validate_source(dataset, cfg.paths.reports)
    path = join(cfg.paths.root, "predictions", model, f"v{pinned.version}-{stamp()}")
    # Ray Data's read, validate and write tasks take a whole CPU each: the actors may use what
    # is free beyond that one, or a small machine that also runs Serve replicas deadlocks.
    spare = ray.available_resources().get("CPU", 1.0) - 1.0
    actors = max(1, int(spare / WORKER_CPUS))
    validated.valid.map_batches(
        Scorer,
        fn_constructor_kwargs={
            "registry": registry.root,
            "model": model,
            "version": pinned.version,
            "postprocess": to_dict(spec),
            "id_column": dataset.id_column,
            "explain_steps": cfg.serve.explain.steps if explain else None,
        },
        batch_format="pyarrow",
        batch_size=cfg.features.batch_size,
        num_cpus=WORKER_CPUS,
        concurrency=(1, actors),
    ).write_parquet(path)
    rows = _rows(path)
    log.info("%s: predicted %d rows into %s", pinned.label, rows, path)
    return BatchResult(path, rows, pinned.label, ref, validated.report, explain)


def _rows(path: str) -> int:
    """Rows written, from the parquet footers: what is on disk, not what was meant to be."""
    fs, local = resolve(path)
    return pads.dataset(local, filesystem=fs, format="parquet").count_rows()


def describe(result: BatchResult) -> list[tuple[str, str]]:
    """Readable lines for the job summary: version, rows, validation, where the output is."""
    return [
        ("version", f"{result.version} (asked for: {result.ref})"),
        ("predicted", f"{result.rows:,} rows"),
        *(
            [("explained", "each row: explained, base, attributions (one per input column)")]
            if result.explained
            else []
        ),
        *describe_validation(result.validation),
        ("output", result.path),
    ]

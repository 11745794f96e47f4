"""A model version's files, named once: `Bundle` is what training writes (a run, a sweep's best
trial, a retrained challenger all go through training/run.py), `Stored` is how everyone else
reads it (the Predictor, the serving graph, monitoring, batch inference, `keel registry`, the
notebooks). No other module names a version's files.

Every read goes through the registry, so each file is checked against the manifest's sha256.
A file a version lacks (versions written before it existed) reads as None or a stated default.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from keel import storage
from keel.config.schema import DatasetConfig, Family
from keel.errors import RegistryError

from .card import model_card

if TYPE_CHECKING:
    from .store import ModelVersion, Registry

Content = bytes | str | Callable[[int], bytes | str]  # a callable gets the version number


class File(StrEnum):
    """The files of a version (the manifest, version.json, is the store's own)."""

    weights = "model.pt"  # the model family's saved state
    spec = "model.json"  # what rebuilds the model: family, model config, widths, head
    features = "features.json"  # the fitted feature pipeline's state
    config = "config.yaml"  # the resolved config the version was trained with
    metrics = "metrics.json"  # test and baseline metrics, slices, per-epoch history
    lineage = "lineage.json"  # config hash, data fingerprint, commit, seed, parent
    latency = "latency.json"  # measured ms per row by batch size
    reference = "reference.parquet"  # sampled training rows + predictions: monitoring's reference
    estimator = "estimator.json"  # what estimates quality without labels (training/estimator.py)
    explanation = "explain.json"  # explanations' baseline row and the global importance
    importance = "importance.png"  # the global importance, plotted for the card
    card = "MODEL_CARD.md"  # the human summary, rendered from the files above


@dataclass(frozen=True)
class ModelSpec:
    """model.json: everything needed to rebuild the model before its weights are loaded."""

    model: dict  # the model config group, as trained
    in_features: int  # width of the feature matrix
    head: dict  # the task head's state (keel.models.Head)
    input_columns: list[str]  # the raw columns the feature pipeline reads
    family: Family = Family.torch  # which model family saved the weights

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelSpec:
        # versions written before families were recorded are all torch
        name = data.get("family", Family.torch.value) if isinstance(data, dict) else None
        if name not in {f.value for f in Family}:
            known = ", ".join(f.value for f in Family)
            raise RegistryError(
                f"{where} names the model family {name!r}, which this keel does not know "
                f"({known}): upgrade keel or retrain the version"
            )
        try:
            return cls(
                model=dict(data["model"]),
                in_features=int(data["in_features"]),
                head=dict(data["head"]),
                input_columns=list(data["input_columns"]),
                family=Family(name),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RegistryError(f"{where} is not a model spec ({e!r})") from None


@dataclass
class Bundle:
    """Everything a trained version holds, as values; `files()` lays it out for the store."""

    spec: ModelSpec
    weights: bytes
    features: dict  # FeaturePipeline.to_state()
    config: str  # the resolved config as YAML
    metrics: dict
    lineage: dict
    latency: dict
    reference: pa.Table
    estimator: dict | None  # the estimator's JSON; None when the validation split was too small
    explanation: dict  # {"baseline", "explained", "rows", "importance": {column: mean |attr|}}
    importance: bytes  # the importance plot (PNG)
    card: Callable[[int], str] = field(repr=False)  # the version number -> MODEL_CARD.md

    @classmethod
    def with_card(cls, name: str, resolved: dict, **parts: Any) -> Bundle:
        """A bundle whose card is rendered from the resolved config (a dict) and its own
        metrics, lineage and latency."""
        metrics, lin, latency = parts["metrics"], parts["lineage"], parts["latency"]
        importance = parts["explanation"].get("importance", {})
        return cls(
            **parts,
            card=lambda v: model_card(
                name, v, resolved, metrics, lin, latency, importance, File.importance.value
            ),
        )

    def files(self) -> dict[str, Content]:
        """File name -> content, as the store writes them."""
        return {
            File.weights: self.weights,
            File.spec: json.dumps(asdict(self.spec), indent=2),
            File.features: json.dumps(self.features),
            File.config: self.config,
            File.metrics: json.dumps(self.metrics, indent=2, default=_number),
            File.lineage: json.dumps(self.lineage, indent=2),
            File.latency: json.dumps(self.latency, indent=2),
            File.reference: storage.parquet_bytes(self.reference),
            **({File.estimator: json.dumps(self.estimator)} if self.estimator else {}),
            File.explanation: json.dumps(self.explanation),
            File.importance: self.importance,
            File.card: self.card,
        }


def _number(value: Any) -> Any:
    """JSON fallback for numpy scalars in metrics and history."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {value!r}")


class Stored:
    """The files of one registered version, read typed and checked."""

    def __init__(self, registry: Registry, version: ModelVersion):
        self.registry = registry
        self.version = version

    @classmethod
    def get(cls, registry: Registry, model: str, ref: int | str = "production") -> Stored:
        return cls(registry, registry.get(model, ref))

    def has(self, name: File) -> bool:
        return name in self.version.files

    def uri(self, name: File) -> str:
        return self.version.uri(name)

    def _json(self, name: File) -> Any:
        return self.registry.read_json(self.version, name) if self.has(name) else None

    def spec(self) -> ModelSpec:
        return ModelSpec.from_json(
            self.registry.read_json(self.version, File.spec), self.uri(File.spec)
        )

    def weights(self) -> bytes:
        return self.registry.read_bytes(self.version, File.weights)

    def features(self) -> dict:
        return self.registry.read_json(self.version, File.features)

    def metrics(self) -> dict | None:
        return self._json(File.metrics)

    def lineage(self) -> dict | None:
        return self._json(File.lineage)

    def latency(self) -> dict:
        """The latency profile; {} for a version without one."""
        return self._json(File.latency) or {}

    def reference(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.registry.read_bytes(self.version, File.reference)))

    def estimator(self) -> dict | None:
        """The label-free quality estimator's JSON; None for a version without one (trained
        before estimation existed, or on too small a validation split)."""
        return self._json(File.estimator)

    def explanation(self) -> dict | None:
        """The explanations' baseline and global importance; None for a version trained
        before explanations existed."""
        return self._json(File.explanation)

    def card_uri(self) -> str | None:
        return self.uri(File.card) if self.has(File.card) else None

    def config(self) -> dict:
        """The resolved config the version was trained with, as a plain dict."""
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
        config = yaml.load(self.registry.read_text(self.version, File.config), Loader=loader)
        if not isinstance(config, dict) or "dataset" not in config:
            raise RegistryError(f"{self.uri(File.config)} has no dataset section")
        return config

    def dataset(self) -> DatasetConfig:
        """The training data's schema, typed: what a request must look like."""
        from omegaconf import OmegaConf

        merged = OmegaConf.merge(OmegaConf.structured(DatasetConfig), self.config()["dataset"])
        return OmegaConf.to_object(merged)

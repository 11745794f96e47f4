"""A registered model version, ready to predict: features -> network -> head -> post-processing.

Everything comes from the registry version (weights, feature state, head, the dataset schema
in its config), so a Serve replica, a batch-inference worker and a notebook all predict the
same way from the same files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from keel.config.schema import DatasetConfig, PostprocessConfig
from keel.data.batch import Batch
from keel.errors import KeelError
from keel.features import FeaturePipeline
from keel.models import Head
from keel.models.family import ModelFamily, family
from keel.registry import ModelVersion, Registry
from keel.registry.bundle import File, Stored

from .postprocess import Postprocessor

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    version: ModelVersion
    dataset: DatasetConfig  # the training data's schema: what a request must look like
    features: FeaturePipeline
    family: ModelFamily
    model: Any  # the family's fitted model
    head: Head
    post: Postprocessor
    latency: dict  # the registry's latency profile of this version
    baseline: np.ndarray | None  # the row explanations start from; None: trained before them

    @classmethod
    def load(
        cls,
        registry: Registry,
        model: str,
        ref: int | str = "production",
        postprocess: PostprocessConfig | None = None,
        device: str | None = None,
    ) -> Predictor:
        stored = Stored.get(registry, model, ref)
        spec = stored.spec()
        head = Head(**spec.head)
        fam = family(spec.family)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        fitted = fam.load(
            spec.model, spec.in_features, head, stored.weights(), stored.uri(File.weights), device
        )
        where = f"serve.models.{model}.postprocess"
        post = Postprocessor(postprocess or PostprocessConfig(), head, where)
        features = FeaturePipeline.from_state(stored.features())
        explanation = stored.explanation()
        baseline = None if explanation is None else np.asarray(explanation["baseline"], np.float32)
        log.info("loaded %s on %s", stored.version.label, device)
        return cls(
            stored.version,
            stored.dataset(),
            features,
            fam,
            fitted,
            head,
            post,
            stored.latency(),
            baseline,
        )

    @property
    def request_columns(self) -> dict:
        """The dataset's columns a request may carry (all but the target)."""
        return {n: c for n, c in self.dataset.columns.items() if n != self.dataset.target}

    def predict(self, rows: Batch) -> np.ndarray:
        """Raw predictions: P(positive) for binary, class probabilities, or the value."""
        return self.family.predict(self.model, self.head, self.features.transform(rows))

    def predict_rows(self, rows: list[dict]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        raw = self.predict(rows)
        return raw, self.post.rows(raw)

    def check_explainable(self) -> None:
        """Raises NotExplainable for a version trained before keel stored explanations."""
        if self.baseline is None:
            raise NotExplainable(
                f"{self.version.label} was trained before keel stored explanations: retrain it"
            )

    def explain_rows(
        self, rows: Batch, steps: int
    ) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
        """Raw predictions, post-processed outputs and one explanation per row: what is
        explained, the base value, the explained output and an attribution per input column
        (keel.models.explain; encoded features folded back to their columns)."""
        self.check_explainable()
        x = self.features.transform(rows)
        raw = self.family.predict(self.model, self.head, x)
        why = self.family.explain(
            self.model, self.head, x, self.baseline, steps, self.dataset.target
        )
        columns = self.features.input_columns
        explanations = [
            {
                "explained": why.explained,
                "base": float(base),
                "output": float(output),
                "attributions": dict(zip(columns, map(float, row), strict=True)),
            }
            for base, output, row in zip(
                why.base, why.output, self.features.fold(why.attributions), strict=True
            )
        ]
        return raw, self.post.rows(raw), explanations


class NotExplainable(KeelError):
    """The version has no stored baseline to explain from (trained before explanations)."""

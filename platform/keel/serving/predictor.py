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
from keel.features import FeaturePipeline
from keel.models import Head, build, predict
from keel.registry import ModelVersion, Registry
from keel.registry.configs import dataset_config

from .postprocess import Postprocessor

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    version: ModelVersion
    dataset: DatasetConfig  # the training data's schema: what a request must look like
    features: FeaturePipeline
    network: torch.nn.Module
    head: Head
    post: Postprocessor
    latency: dict  # the registry's latency profile of this version

    @classmethod
    def load(
        cls,
        registry: Registry,
        model: str,
        ref: int | str = "production",
        postprocess: PostprocessConfig | None = None,
        device: str | None = None,
    ) -> Predictor:
        mv = registry.get(model, ref)
        spec = registry.read_json(mv, "model.json")
        head = Head(**spec["head"])
        network = build(spec["model"], spec["in_features"], head.outputs)
        network.load_state_dict(registry.load_state_dict(mv))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        network.to(device).eval()
        dataset = dataset_config(registry, mv)
        where = f"serve.models.{model}.postprocess"
        post = Postprocessor(postprocess or PostprocessConfig(), head, where)
        latency = registry.read_json(mv, "latency.json") if "latency.json" in mv.files else {}
        features = FeaturePipeline.from_state(registry.read_json(mv, "features.json"))
        log.info("loaded %s on %s", mv.label, device)
        return cls(mv, dataset, features, network, head, post, latency)

    @property
    def request_columns(self) -> dict:
        """The dataset's columns a request may carry (all but the target)."""
        return {n: c for n, c in self.dataset.columns.items() if n != self.dataset.target}

    def predict(self, rows: Batch) -> np.ndarray:
        """Raw predictions: P(positive) for binary, class probabilities, or the value."""
        return predict(self.network, self.head, self.features.transform(rows))

    def predict_rows(self, rows: list[dict]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        raw = self.predict(rows)
        return raw, self.post.rows(raw)

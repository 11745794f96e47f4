"""Model families: how one kind of model is built from config, fitted inside a Ray Train
worker, saved, loaded and applied to a feature matrix. A version's spec (registry.bundle.
ModelSpec) names its family, so serving, evaluation and monitoring never ask which kind of
model they hold; each family is one entry in FAMILIES (the trees are in trees.py).
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np

from keel.config.schema import Family
from keel.errors import RegistryError

from .explain import Explanation, integrated_gradients
from .head import Head
from .trees import LightGBM, XGBoost


class ModelFamily(Protocol):
    """What training, registration and serving need of a kind of model."""

    name: Family
    trainer: str  # the Ray Train trainer class that runs `worker_loop`, as a dotted path
    # the function each Ray Train worker runs to fit it, as a dotted path; its checkpoints hold
    # the best model so far as `save` writes it (training.checkpoint.BEST) and the history
    worker_loop: str

    def save(self, fitted: Any) -> bytes:
        """The fitted model's state, as the registry stores it."""

    def load(
        self, model: dict, in_features: int, head: Head, data: bytes, where: str, device: str
    ) -> Any:
        """A fitted model back from `save`'s bytes, ready to predict on `device` (cpu, cuda);
        `where` names the file in errors."""

    def predict(self, fitted: Any, head: Head, x: np.ndarray) -> np.ndarray:
        """Raw predictions for a feature matrix: P(positive), class probabilities, or values."""

    def explain(
        self, fitted: Any, head: Head, x: np.ndarray, baseline: np.ndarray, steps: int, target: str
    ) -> Explanation:
        """Attributions of each row's margin to the feature columns (keel.models.explain);
        `baseline` and `steps` serve the families that integrate from a baseline row."""


class Torch:
    """Networks in torch (MLP, linear, a user's `_target_` class), fitted by keel's loop with
    DDP across workers; saved as a state dict, loaded with weights_only=True."""

    name = Family.torch
    trainer = "ray.train.torch.TorchTrainer"
    worker_loop = "keel.training.loop.train_loop"

    def build(self, model: dict, in_features: int, head: Head) -> Any:
        from .tabular import build

        return build(model, in_features, head.outputs)

    def save(self, fitted: Any) -> bytes:
        import torch

        state = fitted.state_dict() if isinstance(fitted, torch.nn.Module) else fitted
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    def load(
        self, model: dict, in_features: int, head: Head, data: bytes, where: str, device: str
    ) -> Any:
        network = self.build(model, in_features, head)
        network.load_state_dict(state_dict(data, where))
        return network.to(device).eval()

    def predict(self, fitted: Any, head: Head, x: np.ndarray) -> np.ndarray:
        from .infer import predict

        return predict(fitted, head, x)

    def explain(self, fitted, head, x, baseline, steps, target) -> Explanation:
        return integrated_gradients(fitted, head, x, baseline, steps, target)


def state_dict(data: bytes, where: str) -> dict:
    """Saved torch weights, loaded with weights_only=True: a model file can never run code."""
    import pickle

    import torch

    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RegistryError(
            f"{where} is not a plain torch state dict; refusing to load it "
            f"(weights_only=True: {first})"
        ) from None
    if not isinstance(state, dict):
        raise RegistryError(f"{where} holds a {type(state).__name__}, not a state dict")
    return state


FAMILIES: dict[Family, ModelFamily] = {f.name: f for f in (Torch(), XGBoost(), LightGBM())}


def family(name: Family) -> ModelFamily:
    """The implementation of a family (every member of Family has one)."""
    return FAMILIES[Family(name)]

"""The task head: how targets are encoded, which loss trains the network, what it predicts.

Its state is plain JSON (class labels, or the regression target's mean and scale) so a
registered model reproduces the same predictions in a Serve replica.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from keel.config.schema import Task
from keel.targets import Unknown, encode


@dataclass
class Head:
    task: str
    labels: list = field(default_factory=list)  # classification: class label per output index
    mean: float = 0.0  # regression: the network predicts (y - mean) / scale
    scale: float = 1.0

    @classmethod
    def fit(cls, task: Task, y: np.ndarray) -> Head:
        task = Task(task)
        if task == Task.regression:
            y = np.asarray(y, np.float64)
            return cls(task.value, mean=float(y.mean()), scale=float(y.std() or 1.0))
        labels = sorted(np.unique(y).tolist())
        if task == Task.binary_classification and len(labels) != 2:
            raise ValueError(f"binary classification needs 2 target classes, found {labels}")
        return cls(task.value, labels=labels)

    @property
    def outputs(self) -> int:
        return len(self.labels) if self.task == Task.multiclass_classification else 1

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Targets as the float32 values the loss expects (class index or scaled value); -1
        for a class the head was not fitted on (metrics refuse it rather than miscount it)."""
        if self.task == Task.regression:
            return ((np.asarray(y, np.float64) - self.mean) / self.scale).astype(np.float32)
        labels = np.asarray(y).tolist()
        return encode(labels, self.task, self.labels, Unknown.minus_one).astype(np.float32)

    def decode(self, target: np.ndarray) -> np.ndarray:
        """Encoded targets back in the form the metrics take: the class index (-1 for a class
        the head was not fitted on) or the value."""
        target = np.asarray(target, np.float64)
        if self.task == Task.regression:
            return target * self.scale + self.mean
        return target.astype(np.int64)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task == Task.multiclass_classification:
            return F.cross_entropy(logits, target.long())
        if self.task == Task.binary_classification:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), target)
        return F.mse_loss(logits.squeeze(-1), target)

    def predict(self, logits: torch.Tensor) -> np.ndarray:
        """P(class 1) for binary, class probabilities for multiclass, the value for regression."""
        logits = logits.detach().float()
        if self.task == Task.multiclass_classification:
            return torch.softmax(logits, -1).cpu().numpy()
        if self.task == Task.binary_classification:
            return torch.sigmoid(logits.squeeze(-1)).cpu().numpy()
        return logits.squeeze(-1).cpu().numpy() * self.scale + self.mean

    def to_state(self) -> dict:
        return asdict(self)

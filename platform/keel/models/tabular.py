"""Tabular networks: an MLP (hidden sizes, dropout, normalization) and its linear special case."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
NORMS = {"none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class MLP(nn.Module):
    """Linear -> norm -> activation -> dropout per hidden layer; no hidden layers = a linear
    (logistic, with a sigmoid/softmax head) model."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: list[int] = (),
        dropout: float = 0.0,
        norm: str = "none",
        activation: str = "relu",
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if NORMS[norm] is not None:
                layers.append(NORMS[norm](size))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def build(model: dict[str, Any], in_features: int, out_features: int) -> nn.Module:
    """A module from the plain `model` config; `_target_` names a user class instead of MLP.

    A user class is constructed as cls(in_features=..., out_features=..., **model["params"]).
    """
    target = model.get("_target_")
    if target:
        module_name, _, cls_name = target.rpartition(".")
        cls = getattr(importlib.import_module(module_name), cls_name)
        return cls(in_features=in_features, out_features=out_features, **model.get("params", {}))
    return MLP(
        in_features,
        out_features,
        hidden_sizes=list(model.get("hidden_sizes", [])),
        dropout=float(model.get("dropout", 0.0)),
        norm=model.get("norm", "none"),
        activation=model.get("activation", "relu"),
    )

"""Tabular networks: an MLP (hidden sizes, dropout, normalization) and its linear special case."""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from torch import nn

from keel.errors import ConfigError

MODULES_ENV = "KEEL_MODEL_MODULES"  # packages whose classes `_target_` may name, comma-separated
TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")

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
        cls = user_model_class(target)
        return cls(in_features=in_features, out_features=out_features, **model.get("params", {}))
    return MLP(
        in_features,
        out_features,
        hidden_sizes=list(model.get("hidden_sizes", [])),
        dropout=float(model.get("dropout", 0.0)),
        norm=model.get("norm", "none"),
        activation=model.get("activation", "relu"),
    )


def user_model_class(target: str) -> type[nn.Module]:
    """The class a `_target_` names, imported only from packages listed in KEEL_MODEL_MODULES.

    A model config travels in the registry, and importing a module runs its code: whoever can
    write the registry must not choose what serving imports. The environment of the processes
    that train and serve does (keel forwards it to Ray workers and Serve replicas)."""
    allowed = [p.strip() for p in os.environ.get(MODULES_ENV, "").split(",") if p.strip()]
    if not TARGET.fullmatch(target):
        raise ConfigError(f"model._target_ {target!r} is not a dotted name like my_models.Net")
    module_name, _, cls_name = target.rpartition(".")
    if not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
        raise ConfigError(
            f"model._target_ {target!r} is in module {module_name!r}, which {MODULES_ENV} does "
            f"not allow (allowed: {', '.join(allowed) or 'none'}): add its package, e.g. "
            f"{MODULES_ENV}={module_name.split('.')[0]}"
        )
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model._target_ {target!r} is not a torch.nn.Module class")
    return cls

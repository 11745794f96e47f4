"""Torch modules for tabular tasks, built from config by name or `_target_`."""

from .head import Head
from .infer import predict, score
from .tabular import MLP, build

__all__ = ["MLP", "Head", "build", "predict", "score"]

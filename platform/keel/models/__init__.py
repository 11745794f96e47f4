"""Tabular models: the torch networks (built from config by name or `_target_`), the task
head, and the model families that build, save, load and apply them (family.py)."""

from .head import Head
from .infer import score
from .tabular import MLP, build

__all__ = ["MLP", "Head", "build", "score"]

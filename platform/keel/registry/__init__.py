"""Versioned model store with lineage, stages and promotion.

The files and stages are described in README.md, "Training, registry, sweeps".

`keel.registry.lineage` stays the module (lineage() lives there): re-exporting a function of
the same name here would shadow it.
"""

from .bundle import Bundle, File, ModelSpec, Stored
from .card import main_metric, model_card
from .stages import Action, Move, Promotion, Stages
from .store import (
    ModelVersion,
    PromotionRefused,
    Registry,
    RegistryError,
    check_floor,
    register_candidate,
)

__all__ = [
    "Action",
    "Bundle",
    "File",
    "ModelSpec",
    "ModelVersion",
    "Move",
    "Promotion",
    "PromotionRefused",
    "Registry",
    "RegistryError",
    "Stages",
    "Stored",
    "check_floor",
    "main_metric",
    "model_card",
    "register_candidate",
]

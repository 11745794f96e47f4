"""The resolved config a version was trained with (its `config.yaml`), read back typed.

Serving reads the dataset schema from it (what a request must look like), monitoring the
schema and task, retraining the groups that made the champion.
"""

from __future__ import annotations

import yaml
from omegaconf import OmegaConf

from keel.config.schema import DatasetConfig

from .store import ModelVersion, Registry, RegistryError


def version_config(registry: Registry, mv: ModelVersion) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
    config = yaml.load(registry.read_text(mv, "config.yaml"), Loader=loader)
    if not isinstance(config, dict) or "dataset" not in config:
        raise RegistryError(f"{mv.uri('config.yaml')} has no dataset section")
    return config


def dataset_config(registry: Registry, mv: ModelVersion) -> DatasetConfig:
    merged = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig), version_config(registry, mv)["dataset"]
    )
    return OmegaConf.to_object(merged)

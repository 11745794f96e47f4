"""The serving benchmark's inputs: its two trained models and the request bodies it sends.

Training is set-up, not what is measured, so the models are reused across runs for as long as
the configuration that training reads is unchanged (like common.cached_files for data).
"""

from __future__ import annotations

import dataclasses
import json
import logging

from keel.config import KeelConfig, to_dict
from keel.data import synthetic
from keel.data.batch import json_rows
from keel.models import build
from keel.registry import File
from keel.storage import delete_dir, exists, join, read_json, write_json
from keel.training.dataset import prepare
from keel.training.run import train

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Model:
    role: str  # demo | heavy
    name: str  # registry model name
    version: int
    parameters: int
    hidden_sizes: list[int]


def trained_models(cfg: KeelConfig, heavy_hidden: list[int]) -> list[Model]:
    """The two models: trained on first use, reused while what training reads is unchanged.

    The marker is written last, so an interrupted training is redone, never half reused.
    """
    marker = join(cfg.paths.root, "models.json")
    sections = {s: to_dict(getattr(cfg, s)) for s in ("dataset", "features", "model", "train")}
    # and the bundle's files: a version registered before a file existed lacks it (explain.json)
    files = sorted(f.value for f in File)
    key = json.loads(json.dumps({**sections, "heavy": heavy_hidden, "files": files}, default=str))
    if exists(marker) and (cached := read_json(marker))["key"] == key:
        log.info("reusing the models trained by an earlier run in %s", cfg.paths.registry)
        if exists(cfg.paths.logs):
            delete_dir(cfg.paths.logs)  # that run's prediction log
        return [Model(**m) for m in cached["models"]]
    if exists(cfg.paths.root):
        delete_dir(cfg.paths.root)
    models = train_models(cfg, heavy_hidden)
    write_json(marker, {"key": key, "models": [dataclasses.asdict(m) for m in models]})
    return models


def train_models(cfg: KeelConfig, heavy_hidden: list[int]) -> list[Model]:
    """Train the demo and the heavy MLP on the same prepared data, one registry model each."""
    data = prepare(cfg)
    in_features, outputs = len(data.features.output_columns), data.head.outputs
    heavy = dataclasses.replace(cfg.model, hidden_sizes=list(heavy_hidden))
    models = []
    for role, name, model in (
        ("demo", cfg.dataset.name, cfg.model),
        ("heavy", f"{cfg.dataset.name}_heavy", heavy),
    ):
        c = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, name=name))
        trained = train(dataclasses.replace(c, model=model), data)
        size = sum(t.numel() for t in build(to_dict(model), in_features, outputs).parameters())
        log.info("trained %s: %s parameters", trained.version.label, f"{size:,}")
        models.append(Model(role, name, trained.version.version, size, list(model.hidden_sizes)))
    return models


def make_payloads(cfg: KeelConfig, sizes: list[int], count: int) -> dict[int, list[bytes]]:
    """`count` distinct request bodies per size, from fresh rows of the dataset (no target)."""
    ds = cfg.dataset
    source = dataclasses.replace(ds.source, rows=max(sizes) * count, seed=ds.source.seed + 1)
    table = synthetic.generate(dataclasses.replace(ds, source=source))
    instances = json_rows(table, drop=(ds.target,))
    return {
        n: [
            json.dumps({"instances": instances[i * n : (i + 1) * n]}).encode() for i in range(count)
        ]
        for n in sizes
    }

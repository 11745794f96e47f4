"""The model bundle (registry/bundle.py): one writer and one reader of a version's files, and
the only module that names them; the model family behind the weights (models/family.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keel.config.schema import Family
from keel.models import Head
from keel.models.family import FAMILIES, family, state_dict
from keel.registry import Bundle, File, ModelSpec, Registry, RegistryError, Stored

ROOT = Path(__file__).resolve().parents[2]
HEAD = Head("binary_classification", labels=["no", "yes"])
CONFIG = """dataset:
  name: churn
  task: binary_classification
  target: churned
  columns:
    age: {type: float}
    churned: {type: category}
"""


def bundle(**changes) -> Bundle:
    fam = family(Family.torch)
    spec = ModelSpec(
        model={"name": "linear", "hidden_sizes": [], "dropout": 0.0, "params": {}},
        in_features=3,
        head=HEAD.to_state(),
        input_columns=["age"],
    )
    network = fam.build(spec.model, spec.in_features, HEAD)
    parts = dict(
        spec=spec,
        weights=fam.save(network),
        features={"format": 1, "steps": []},
        config=CONFIG,
        metrics={"test": {"roc_auc": np.float64(0.8)}, "baseline": {"roc_auc": 0.5}},
        lineage={"seed": 0},
        latency={"ms_per_row": {"1": 0.2}},
        reference=pa.table({"age": [1.0, 2.0], "churned": ["no", "yes"]}),
        estimator={"method": "cbpe", "task": "binary_classification", "rows": 40, "knots": []},
        explanation={"baseline": [0.0, 0.0, 0.0], "importance": {"age": 0.3}, "rows": 2},
        importance=b"\x89PNG",
    )
    return Bundle.with_card("churn", {"dataset": {"name": "churn"}}, **(parts | changes))


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(str(tmp_path / "registry"))


def test_what_is_written_reads_back_typed(reg):
    written = bundle()
    mv = reg.register("churn", written.files())
    assert set(mv.files) == {f.value for f in File}
    stored = Stored.get(reg, "churn", "latest")
    assert stored.spec() == written.spec and stored.spec().family is Family.torch
    assert stored.metrics()["test"]["roc_auc"] == 0.8  # a numpy scalar, written as a number
    assert stored.lineage() == {"seed": 0} and stored.latency() == written.latency
    assert stored.features() == written.features
    assert stored.estimator() == written.estimator
    assert stored.explanation() == written.explanation
    assert reg.read_bytes(mv, File.importance) == b"\x89PNG"
    assert stored.reference().equals(written.reference)
    assert stored.dataset().target == "churned" and stored.config()["dataset"]["name"] == "churn"
    card = reg.read_text(mv, File.card)
    assert card.startswith("# Model card: churn v1") and stored.card_uri().endswith(File.card)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    fam = family(stored.spec().family)
    loaded = fam.load(stored.spec().model, 3, HEAD, stored.weights(), "w", "cpu")
    original = fam.build(written.spec.model, 3, HEAD)
    original.load_state_dict(state_dict(written.weights, "w"))
    np.testing.assert_allclose(fam.predict(loaded, HEAD, x), fam.predict(original, HEAD, x))


def test_a_version_without_the_optional_files_reads_as_none_or_empty(reg):
    files = {File.spec: bundle().files()[File.spec], File.config: CONFIG}
    stored = Stored(reg, reg.register("churn", files))
    assert stored.metrics() is None and stored.lineage() is None
    assert stored.latency() == {} and stored.card_uri() is None
    assert not stored.has(File.reference) and stored.estimator() is None
    assert stored.explanation() is None


def test_a_bundle_without_an_estimator_writes_no_estimator_file():
    assert File.estimator not in bundle(estimator=None).files()


def test_a_spec_written_before_families_reads_as_torch(reg):
    old = {"model": {"name": "mlp"}, "in_features": 4, "head": HEAD.to_state(),
           "input_columns": ["age"]}  # fmt: skip
    stored = Stored(reg, reg.register("churn", {File.spec: json.dumps(old)}))
    assert stored.spec().family is Family.torch and stored.spec().in_features == 4


def test_an_unknown_family_names_the_file_and_the_fix(reg):
    spec = {**json.loads(bundle().files()[File.spec]), "family": "catboost"}
    stored = Stored(reg, reg.register("churn", {File.spec: json.dumps(spec)}))
    with pytest.raises(RegistryError, match=r"churn/0001/model.json names the model family "):
        stored.spec()
    broken = Stored(reg, reg.register("churn", {File.spec: json.dumps({"family": "torch"})}))
    with pytest.raises(RegistryError, match="is not a model spec"):
        broken.spec()


def test_every_family_is_implemented():
    assert set(FAMILIES) == set(Family)
    for member in Family:
        assert family(member).name is member


def test_no_module_but_the_bundle_names_a_versions_files():
    names = [re.escape(f.value) for f in File]
    pattern = re.compile(rf"[\"'/ ]({'|'.join(names)})\b")
    found = []
    code = [ROOT / "platform", ROOT / "jobs", ROOT / "benchmarks"]
    for path in [p for d in code for p in d.rglob("*.py")]:
        if path.name == "bundle.py" and path.parent.name == "registry":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            # conf/config.yaml is Hydra's root config, another file of the same name
            if pattern.search(line.replace("conf/config.yaml", "")):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)

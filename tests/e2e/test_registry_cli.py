"""The real `keel registry` command on a registry built with the API (no Ray needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from keel.config import load
from keel.registry import Registry, check_floor, model_card

KEEL = str(Path(sys.executable).parent / "keel")
ROOT = Path(__file__).resolve().parents[2]
FLOOR = "++slo.quality_floor.roc_auc=0.7"  # set whatever the experiment says


def version_files(roc_auc: float, seed: int) -> dict[str, bytes | str]:
    """A small but well-formed version: real weights, metrics with a baseline and slices."""
    torch.manual_seed(seed)
    weights = io.BytesIO()
    torch.save(torch.nn.Linear(4, 1).state_dict(), weights)
    metrics = {
        "primary_metric": "roc_auc",
        "test": {"roc_auc": roc_auc, "log_loss": 0.45},
        "baseline": {"roc_auc": 0.5, "log_loss": 0.69},
        "slices": {"plan": {"basic": {"roc_auc": roc_auc - 0.1, "rows": 50}}},
    }
    lineage = {"config_hash": str(seed) * 64, "data_fingerprint": "d" * 64, "seed": seed}
    card = model_card("churn", seed, {}, metrics, lineage, {"ms_per_row": {"1": 0.2}})
    return {
        "model.pt": weights.getvalue(),
        "metrics.json": json.dumps(metrics),
        "lineage.json": json.dumps(lineage),
        "MODEL_CARD.md": card,
    }


@pytest.fixture
def registry(tmp_path) -> Registry:
    """churn v1 (0.83, production), v2 (0.61, below the floor), v3 (0.86)."""
    reg = Registry(str(tmp_path / "registry"))
    for seed, auc in enumerate((0.83, 0.61, 0.86), start=1):
        reg.register("churn", version_files(auc, seed), parent=seed - 1 or None)
    reg.promote("churn", 1, reason="initial")
    return reg


@pytest.fixture
def keel(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KEEL, "registry", *args, f"paths.root={tmp_path}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    return run


def text(proc: subprocess.CompletedProcess) -> str:
    """stdout with rich's wrapping undone: a narrow table wraps its own title."""
    return " ".join(proc.stdout.split())


def stages(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "registry/churn/stages.json").read_text())


def lines_of(out: str) -> dict[str, str]:
    """`churn vN` -> the rest of its line in `keel registry list`."""
    rows = {}
    for line in out.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) == 3 and parts[0] == "churn":
            rows[f"churn {parts[1]}"] = parts[2]
    return rows


def test_list_shows_versions_stages_and_the_headline_metric(registry, keel):
    proc = keel("list")
    assert proc.returncode == 0, proc.stderr
    rows = lines_of(proc.stdout)
    assert set(rows) == {"churn v1", "churn v2", "churn v3"}
    assert "roc_auc 0.8300" in rows["churn v1"] and rows["churn v1"].endswith("<- production")
    assert "roc_auc 0.6100" in rows["churn v2"] and "production" not in rows["churn v2"]
    assert registry.get("churn", 1).created_at in rows["churn v1"]


def test_show_prints_manifest_metrics_lineage_and_card(registry, keel):
    proc = keel("show", "churn", "3", "experiment=churn", FLOOR)  # overrides after the ref
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("churn v3")
    assert "0.8600 (baseline 0.5000)" in out and "parent" in out and "v2" in out
    assert "3" * 16 in out and "3" * 17 not in out  # the config hash, shortened
    assert "SLO floor passes" in text(proc)
    mv = registry.get("churn", 3)
    assert f"file model.pt sha256 {mv.files['model.pt'][:16]}" in text(proc)
    # the card's path, which a long tmp path makes rich fold mid-name: read it with no spacing
    assert "churn/0003/MODEL_CARD.md" in "".join(out.split("model card", 1)[1].split())

    default = keel("show", "churn")  # production when there is one
    assert default.returncode == 0 and default.stdout.startswith("churn v1")
    assert "production" in default.stdout and "SLO floor none set" in text(default)
    weak = keel("show", "churn", "v2", FLOOR)
    assert "roc_auc 0.61 is below the SLO floor 0.70" in text(weak)


def test_promote_and_rollback_move_the_stage(registry, keel, tmp_path):
    proc = keel("promote", "churn", "3", FLOOR, "--reason", "better auc")
    assert proc.returncode == 0, proc.stderr
    assert "promoted churn v3 to production previous v1" in text(proc)
    assert "stages.json" in text(proc)
    history = stages(tmp_path)["history"]
    assert stages(tmp_path)["production"] == 3
    assert (history[-1]["previous"], history[-1]["reason"], history[-1]["forced"]) == (
        1,
        "better auc",
        False,
    )

    proc = keel("rollback", "churn")
    assert proc.returncode == 0, proc.stderr
    assert "rolled back churn production to v1 replaced v3" in text(proc)
    assert stages(tmp_path)["production"] == 1
    assert registry.get("churn").version == 1

    proc = keel("rollback", "churn")
    assert proc.returncode == 1
    assert "no earlier production version of churn" in text(proc)


def test_a_refused_promotion_exits_1_with_the_floor_sentence(registry, keel, tmp_path):
    before = stages(tmp_path)
    proc = keel("promote", "churn", "2", FLOOR)
    assert proc.returncode == 1
    assert "roc_auc 0.61 is below the SLO floor 0.70 (slo.quality_floor.roc_auc)" in text(proc)
    assert "--force" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert stages(tmp_path) == before

    proc = keel("promote", "churn", "2", FLOOR, "--force", "--reason", "hotfix for outage")
    assert proc.returncode == 0, proc.stderr
    assert "forced past roc_auc 0.61 is below the SLO floor" in text(proc)
    last = stages(tmp_path)["history"][-1]
    assert (last["version"], last["forced"], last["reason"]) == (2, True, "hotfix for outage")
    assert stages(tmp_path)["production"] == 2


def test_promote_applies_the_floor_of_the_experiment_named(registry, keel, tmp_path):
    floor = load(["experiment=listings"]).slo.quality_floor
    metrics = registry.read_json(registry.get("churn", 3), "metrics.json")
    expected = check_floor(metrics, floor)  # churn metrics against the listings floor
    proc = keel("promote", "churn", "3", "experiment=listings")
    assert proc.returncode == (1 if expected else 0), proc.stderr
    assert all(sentence in text(proc) for sentence in expected)
    assert stages(tmp_path)["production"] == (1 if expected else 3)


def test_staging_stage_and_no_floor_by_default(registry, keel, tmp_path):
    proc = keel("promote", "churn", "latest", "--stage", "staging")
    assert proc.returncode == 0, proc.stderr
    assert (stages(tmp_path)["staging"], stages(tmp_path)["production"]) == (3, 1)
    assert "<- staging" in keel("list").stdout


def test_a_corrupted_version_is_reported_not_hidden(registry, keel, tmp_path):
    (tmp_path / "registry/churn/0002/metrics.json").write_text('{"test": {"roc_auc": 0.99}}')
    listing = keel("list")
    assert listing.returncode == 0, listing.stderr
    assert "DAMAGED" in lines_of(listing.stdout)["churn v2"]
    proc = keel("show", "churn", "2")
    assert proc.returncode == 1
    assert "metrics.json is corrupted" in proc.stdout.replace("\n", "")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_usage_errors(registry, keel):
    proc = keel("promote", "churn")
    assert proc.returncode == 2 and "VERSION" in proc.stderr
    proc = keel("list", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    proc = keel("show", "listings")
    assert proc.returncode == 1 and "listings has no versions" in text(proc)

"""The model registry: atomic versions, verified reads, stages, quality floor, lineage, cards."""

from __future__ import annotations

import io
import json
import os
import re
import time

import pyarrow as pa
import pytest
import torch

from keel import storage
from keel.errors import KeelError
from keel.models.family import state_dict
from keel.registry import (
    Action,
    File,
    Move,
    PromotionRefused,
    Registry,
    RegistryError,
    Stored,
    check_floor,
    main_metric,
    model_card,
    register_candidate,
)
from keel.registry.lineage import config_hash, lineage

GOOD = {"test": {"roc_auc": 0.83, "log_loss": 0.41}, "baseline": {"roc_auc": 0.5}}
WEAK = {"test": {"roc_auc": 0.61, "log_loss": 0.66}, "baseline": {"roc_auc": 0.5}}


def files(metrics: dict = GOOD, **extra: bytes | str) -> dict[str, bytes | str]:
    return {"model.pt": b"weights", "metrics.json": json.dumps(metrics), **extra}


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(str(tmp_path / "registry"))


# ----------------------------------------------------------------------------- versions


def test_register_get_versions_latest_and_stages(reg, tmp_path):
    v1 = reg.register("churn", files(), parent=None)
    v2 = reg.register("churn", files(WEAK), parent=1)
    assert (v1.version, v2.version, v2.parent) == (1, 2, 1)
    assert v1.path == str(tmp_path / "registry" / "churn" / "0001")
    manifest = json.loads((tmp_path / "registry/churn/0002/version.json").read_text())
    assert manifest["status"] == "candidate" and manifest["parent"] == 1
    assert set(manifest["files"]) == {"model.pt", "metrics.json"}

    assert [v.version for v in reg.versions("churn")] == [1, 2]
    assert reg.models() == ["churn"]
    assert reg.get("churn", "latest").version == 2
    assert reg.get("churn", 1) == v1
    assert reg.get("churn", "1").version == reg.get("churn", "v1").version == 1
    assert reg.read_json(v2, "metrics.json") == WEAK
    assert reg.read_text(v1, "model.pt") == "weights"

    with pytest.raises(RegistryError, match=r"churn has no production version.*promote one"):
        reg.get("churn")
    reg.promote("churn", 1)
    assert reg.get("churn").version == 1
    assert reg.get("churn", "production").version == 1
    assert reg.stages("churn").get("staging") is None


def test_missing_model_version_and_stage_are_named(reg):
    reg.register("churn", files())
    with pytest.raises(RegistryError, match=r"churn has no version 7 \(versions: 1\)"):
        reg.get("churn", 7)
    with pytest.raises(RegistryError, match=r"listings has no versions .*holds: churn"):
        reg.get("listings", "latest")
    with pytest.raises(RegistryError, match=r"unknown version or stage 'canary' for churn"):
        reg.get("churn", "canary")
    with pytest.raises(RegistryError, match=re.escape("churn v1 has no file 'features.json'")):
        reg.read_bytes(reg.get("churn", 1), "features.json")
    assert issubclass(RegistryError, KeelError)


def test_register_rejects_bad_names_and_unknown_parents(reg):
    with pytest.raises(RegistryError, match=re.escape("invalid model name '../x'")):
        reg.register("../x", files())
    with pytest.raises(RegistryError, match=re.escape("version.json is the registry's manifest")):
        reg.register("churn", {"version.json": "{}"})
    with pytest.raises(RegistryError, match="invalid file name 'a/b'"):
        reg.register("churn", {"a/b": "x"})
    with pytest.raises(RegistryError, match="churn has no version 4"):
        reg.register("churn", files(), parent=4)
    for bad in ("churn\n", "..", "/etc", "churn/../../x", "", ".hidden"):
        with pytest.raises(RegistryError, match="invalid model name"):
            reg.register(bad, files())
    assert reg.models() == []


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"production": 1, "hist', "is not valid JSON"),
        ("[1, 2]", "is not a stages file"),
        ('{"production": "x"}', "stage 'production' holds 'x', not a version number"),
        ('{"production": 1.5}', "stage 'production' holds 1.5, not a version number"),
        ('{"production": true}', "stage 'production' holds True, not a version number"),
        ('{"production": 1, "history": [{"stage": "production"}]}', "is not a stage move"),
        ('{"production": 1, "history": [7]}', "history entry 7 is not a stage move"),
    ],
)
def test_a_corrupted_stages_file_is_an_error_naming_file_and_fix(reg, content, error):
    reg.register("churn", files())
    with open(reg.stages_uri("churn"), "w") as f:
        f.write(content)
    with pytest.raises(RegistryError, match=re.escape(error)) as info:
        reg.get("churn", "production")
    assert reg.stages_uri("churn") in str(info.value)


# stages.json as keel has written it: a forced promotion past the floor, a canary stage, a
# rollback
OLD_STAGES = {
    "production": 1,
    "staging": None,
    "history": [
        {"stage": "production", "version": 1, "previous": None, "at": "2026-11-02T10:00:00Z",
         "reason": "first version passing the SLO floor", "forced": False, "action": "promote"},
        {"stage": "production", "version": 2, "previous": 1, "at": "2026-11-03T10:00:00Z",
         "reason": "hotfix", "forced": True, "action": "promote",
         "bypassed": ["roc_auc 0.61 is below the SLO floor 0.70 (slo.quality_floor.roc_auc)"]},
        {"stage": "canary", "version": 2, "previous": None, "at": "2026-11-03T11:00:00Z",
         "reason": "", "forced": False, "action": "promote"},
        {"stage": "production", "version": 1, "previous": 2, "at": "2026-11-04T10:00:00Z",
         "reason": "rollback from v2", "forced": False, "action": "rollback"},
    ],
    "canary": 2,
}  # fmt: skip


def test_an_existing_stages_file_reads_as_types_and_writes_back_the_same(reg):
    for _ in range(2):
        reg.register("churn", files())
    with open(reg.stages_uri("churn"), "w") as f:
        json.dump(OLD_STAGES, f)
    stages = reg.stages("churn")
    assert (stages.production, stages.get("canary"), stages.of(2)) == (1, 2, ["canary"])
    assert [m.action for m in stages.history] == [Action.promote] * 3 + [Action.rollback]
    assert stages.history[1].forced and stages.history[1].bypassed[0].startswith("roc_auc")
    assert stages.holders("production") == [1]
    assert stages.to_json() == OLD_STAGES
    reg.promote("churn", 2, "staging")  # a write keeps every earlier entry as it was
    written = storage.read_json(reg.stages_uri("churn"))
    assert written["history"][:4] == OLD_STAGES["history"] and written["staging"] == 2
    # an entry of an older keel without action or forced was a plain promotion
    bare = {"stage": "production", "version": 3, "previous": None, "at": "", "reason": ""}
    assert Move.from_json(bare, "stages.json").action is Action.promote


def test_a_corrupted_version_manifest_is_an_error_naming_it(reg):
    mv = reg.register("churn", files())
    with open(f"{mv.path}/version.json", "w") as f:
        f.write('{"version": 1, "files"')
    with pytest.raises(RegistryError, match=re.escape(f"{mv.path}/version.json")):
        reg.get("churn", 1)


# ----------------------------------------------------------------------------- atomicity


def crash_on_write(monkeypatch, at: int) -> None:
    """Make the file writer fail on its `at`-th call, like a process dying there."""
    real, calls = storage.write_bytes, []

    def write(uri: str, data: bytes) -> None:
        calls.append(uri)
        if len(calls) == at:
            raise OSError(f"disk full writing {uri}")
        real(uri, data)

    monkeypatch.setattr(storage, "write_bytes", write)


def test_a_crash_mid_register_leaves_nothing_visible(reg, tmp_path, monkeypatch):
    reg.register("churn", files())
    reg.promote("churn", 1)
    stages_before = (tmp_path / "registry/churn/stages.json").read_text()

    crash_on_write(monkeypatch, at=3)
    with pytest.raises(OSError, match="disk full"):
        reg.register("churn", files(**{"features.json": "{}", "config.yaml": "a: 1"}))
    monkeypatch.undo()

    half = tmp_path / "registry/churn/0002"
    assert half.is_dir() and not (half / "version.json").exists()  # written, never committed
    assert [v.version for v in reg.versions("churn")] == [1]
    assert reg.get("churn", "latest").version == 1
    with pytest.raises(RegistryError, match="no version 2"):
        reg.get("churn", 2)
    assert (tmp_path / "registry/churn/stages.json").read_text() == stages_before

    assert reg.register("churn", files()).version == 3  # never reuses the half-written number
    assert [v.version for v in reg.versions("churn")] == [1, 3]
    assert half.is_dir()  # fresh: it may belong to a writer still running


def test_a_model_whose_only_version_crashed_is_not_listed(reg, monkeypatch):
    crash_on_write(monkeypatch, at=2)
    with pytest.raises(OSError):
        reg.register("churn", files())
    assert reg.models() == [] and reg.versions("churn") == []


def test_stale_unfinished_directories_are_cleaned_up(reg, tmp_path, monkeypatch):
    crash_on_write(monkeypatch, at=2)
    with pytest.raises(OSError):
        reg.register("churn", files())
    monkeypatch.undo()
    stale = tmp_path / "registry/churn/0001"
    two_hours_ago = time.time() - 7200
    for f in [*stale.iterdir(), stale]:
        os.utime(f, (two_hours_ago, two_hours_ago))

    assert reg.register("churn", files()).version == 2
    assert not stale.exists()
    assert [v.version for v in reg.versions("churn")] == [2]


def test_a_corrupted_file_is_an_error_naming_it(reg, tmp_path):
    state = torch.nn.Linear(3, 1).state_dict()
    mv = reg.register("churn", files(**{"model.pt": _torch_bytes(state)}))
    (tmp_path / "registry/churn/0001/metrics.json").write_text(json.dumps({"test": {"auc": 1}}))
    with pytest.raises(RegistryError, match=r"churn/0001/metrics.json is corrupted: its sha256"):
        reg.read_json(mv, "metrics.json")
    with (tmp_path / "registry/churn/0001/model.pt").open("r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01")
    with pytest.raises(RegistryError, match=r"0001/model.pt is corrupted"):
        _weights(reg, reg.get("churn", 1))
    (tmp_path / "registry/churn/0001/model.pt").unlink()
    with pytest.raises(RegistryError, match=r"0001/model.pt is missing: churn v1 is damaged"):
        reg.read_bytes(mv, "model.pt")


# ----------------------------------------------------------------------------- floor, promote


def test_check_floor_minimum_maximum_and_missing_metrics():
    metrics = {"test": {"roc_auc": 0.61, "rmse": 130.5, "mae": 10.0, "f1": 0.7}}
    floor = {"roc_auc": 0.7, "rmse": 120.0, "mae": 10.0, "f1": 0.7, "pr_auc": 0.5}
    assert check_floor(metrics, floor) == [
        "roc_auc 0.61 is below the SLO floor 0.70 (slo.quality_floor.roc_auc)",
        "rmse 130.50 is above the SLO ceiling 120.00 (slo.quality_floor.rmse)",
        "pr_auc is missing from the test metrics (have: f1, mae, rmse, roc_auc); "
        "slo.quality_floor.pr_auc needs it",
    ]
    assert check_floor(metrics, {}) == []
    assert check_floor({"test": {"roc_auc": 0.69999}}, {"roc_auc": 0.7}) == [
        "roc_auc 0.69999 is below the SLO floor 0.70 (slo.quality_floor.roc_auc)"
    ]
    assert check_floor({"test": {"roc_auc": float("nan")}}, {"roc_auc": 0.7})[0].startswith(
        "roc_auc is NaN"
    )
    assert "missing" in check_floor({}, {"roc_auc": 0.7})[0]


@pytest.mark.parametrize(
    ("metrics", "floor", "sentence"),
    [
        (WEAK, {"roc_auc": 0.7}, "roc_auc 0.61 is below the SLO floor 0.70"),
        ({"test": {"rmse": 150.0}}, {"rmse": 120.0}, "rmse 150.00 is above the SLO ceiling"),
        ({"test": {"rmse": 100.0}}, {"roc_auc": 0.7}, "roc_auc is missing from the test metrics"),
    ],
)
def test_promote_refuses_below_the_floor_and_force_is_recorded(reg, metrics, floor, sentence):
    reg.register("m", files(GOOD))
    reg.promote("m", 1)
    reg.register("m", files(metrics))
    with pytest.raises(PromotionRefused) as refused:
        reg.promote("m", 2, floor=floor)
    assert sentence in str(refused.value) and "--force" in str(refused.value)
    assert refused.value.failures[0].startswith(sentence)
    assert reg.stages("m").production == 1 and len(reg.stages("m").history) == 1

    done = reg.promote("m", 2, floor=floor, force=True, reason="hotfix")
    stages = reg.stages("m")
    assert stages.production == 2
    last = stages.history[-1]
    assert last == done.move and not done.unchanged
    assert (last.version, last.previous, last.forced, last.reason) == (
        2,
        1,
        True,
        "hotfix",
    )
    assert last.bypassed[0].startswith(sentence)


def test_promote_passing_the_floor_other_stages_and_no_op(reg):
    reg.register("m", files(GOOD))
    entry = reg.promote("m", 1, "staging", floor={"roc_auc": 0.8, "log_loss": 0.5}).move
    assert entry.forced is False and entry.bypassed == () and entry.previous is None
    assert "bypassed" not in reg.stages("m").to_json()["history"][0]
    assert reg.stages("m").get("staging") == 1 and reg.stages("m").production is None
    assert reg.promote("m", 1, "staging").unchanged is True
    assert len(reg.stages("m").history) == 1
    reg.register("m", {"model.pt": b"x"})  # no metrics at all
    with pytest.raises(PromotionRefused, match=re.escape("m v2 has no metrics.json")):
        reg.promote("m", 2, floor={"roc_auc": 0.5})
    with pytest.raises(RegistryError, match="invalid stage 'latest'"):
        reg.promote("m", 1, "latest")


def test_rollback_walks_back_through_the_history(reg):
    for _ in range(3):
        reg.register("m", files())
    with pytest.raises(RegistryError, match="m has no production version to roll back"):
        reg.rollback("m")
    for v in (1, 2, 3):
        reg.promote("m", v)
    assert reg.rollback("m") == 2
    assert reg.get("m").version == 2
    last = reg.stages("m").history[-1]
    assert (last.action, last.version, last.previous) == ("rollback", 2, 3)
    assert reg.rollback("m") == 1
    with pytest.raises(RegistryError, match="no earlier production version of m"):
        reg.rollback("m")
    reg.promote("m", 3)
    assert reg.rollback("m", reason="bad canary") == 1
    assert reg.stages("m").history[-1].reason == "bad canary"


def test_the_first_candidate_passing_the_floor_becomes_production(reg):
    floor = {"roc_auc": 0.7}
    mv, promoted = register_candidate(reg, "m", files(WEAK), floor, None)
    assert (mv.version, promoted) == (1, False)
    assert reg.stages("m").production is None

    mv, promoted = register_candidate(reg, "m", files(GOOD), floor, 1)
    assert (mv.version, promoted) == (2, True)
    stages = reg.stages("m")
    assert stages.production == 2
    assert stages.history[-1].reason == "first version passing the SLO floor"

    mv, promoted = register_candidate(reg, "m", files(GOOD), floor, 2)
    assert (mv.version, promoted, reg.stages("m").production) == (3, False, 2)


# ----------------------------------------------------------------------------- URIs, weights


def test_a_file_uri_root_works_end_to_end(tmp_path):
    reg = Registry(f"file://{tmp_path}/registry")
    mv = reg.register("churn", files())
    assert mv.path == f"file://{tmp_path}/registry/churn/0001"
    reg.register("churn", files(WEAK))
    reg.promote("churn", 1, floor={"roc_auc": 0.7})
    with pytest.raises(PromotionRefused):
        reg.promote("churn", 2, floor={"roc_auc": 0.7})
    assert reg.models() == ["churn"] and reg.get("churn").version == 1
    assert reg.read_json(reg.get("churn", "latest"), "metrics.json") == WEAK
    stages = json.loads((tmp_path / "registry/churn/stages.json").read_text())
    assert stages["production"] == 1
    (tmp_path / "registry/churn/0002/model.pt").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match=re.escape("model.pt is corrupted")):
        reg.read_bytes(reg.get("churn", 2), "model.pt")


class Payload:
    """An arbitrary object: unpickling it could run code, so weights_only must refuse it."""

    def __reduce__(self):
        return (os.getcwd, ())


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _weights(reg, mv) -> dict:
    """A version's weights as the torch family loads them."""
    return state_dict(Stored(reg, mv).weights(), mv.uri(File.weights))


def test_weights_load_with_weights_only(reg):
    state = torch.nn.Linear(4, 2).state_dict()
    mv = reg.register("m", {"model.pt": _torch_bytes(state)})
    loaded = _weights(reg, mv)
    assert set(loaded) == {"weight", "bias"}
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    model = torch.nn.Linear(4, 2)
    model.load_state_dict(loaded)

    evil = reg.register("m", {"model.pt": _torch_bytes({"weight": Payload()})})
    with pytest.raises(RegistryError, match=r"0002/model.pt is not a plain torch state dict"):
        _weights(reg, evil)
    tensor = reg.register("m", {"model.pt": _torch_bytes(torch.zeros(2))})
    with pytest.raises(RegistryError, match="holds a Tensor, not a state dict"):
        _weights(reg, tensor)


# ----------------------------------------------------------------------------- lineage


def test_lineage_records_config_data_code_and_packages(monkeypatch, tmp_path):
    cfg = {"train": {"lr": 0.001, "epochs": 3}, "dataset": {"name": "churn"}}
    rec = lineage(cfg, data_fingerprint="f" * 64, seed=7, parent=2, rows={"train": 10})
    assert rec["config_hash"] == config_hash(cfg) and len(rec["config_hash"]) == 64
    assert (rec["data_fingerprint"], rec["seed"], rec["parent"]) == ("f" * 64, 7, 2)
    assert rec["rows"] == {"train": 10}
    assert rec["packages"]["torch"] == torch.__version__
    assert rec["packages"]["pyarrow"] == pa.__version__
    assert set(rec["packages"]) >= {"keel", "ray", "numpy", "pandas", "hydra-core", "omegaconf"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rec["python"]) and rec["hostname"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["created_at"])
    assert rec["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", rec["git_commit"])
    json.dumps(rec)  # stored as lineage.json

    assert (
        config_hash({"dataset": {"name": "churn"}, "train": {"epochs": 3, "lr": 0.001}})
        == (rec["config_hash"])
    )
    assert config_hash({**cfg, "train": {"lr": 0.002, "epochs": 3}}) != rec["config_hash"]

    monkeypatch.setenv("KEEL_PROJECT_ROOT", str(tmp_path))  # not a git checkout
    assert lineage(cfg, data_fingerprint="", seed=0, parent=None)["git_commit"] is None


def test_model_card_reports_metrics_and_flags_gapped_slices():
    metrics = {
        "primary_metric": "roc_auc",
        "test": {"roc_auc": 0.83, "log_loss": 0.41},
        "baseline": {"roc_auc": 0.5, "log_loss": 0.69},
        "slices": {
            "plan": {"basic": {"roc_auc": 0.70, "rows": 120}, "pro": {"roc_auc": 0.80, "rows": 80}}
        },
    }
    config = {
        "dataset": {
            "name": "churn",
            "task": "binary_classification",
            "target": "churned",
            "split": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 0},
            "source": {"format": "synthetic"},
        },
        "model": {"name": "mlp"},
    }
    lin = {"config_hash": "c0ffee", "data_fingerprint": "d47a", "rows": {"train": 700}}
    latency = {"ms_per_row": {"1": 0.25, "32": 0.02, "256": 0.004}, "device": "cpu"}
    card = model_card("churn", 3, config, metrics, lin, latency)

    assert card.startswith("# Model card: churn v3")
    assert "| roc_auc | 0.8300 | 0.5000 | yes |" in card
    assert "| log_loss | 0.4100 | 0.6900 | yes |" in card
    assert "| plan=basic | 120 | 0.7000 | -0.1300 | gap |" in card
    assert "| plan=pro | 80 | 0.8000 | -0.0300 |  |" in card  # within 0.05: no flag
    assert "| 256 | 0.0040 |" in card
    assert "- Target: `churned`" in card and "`c0ffee`" in card and "train 700" in card
    assert "Weaker on slice plan=basic" in card and "synthetic data" in card
    for section in ("Intended use", "Training data", "Latency profile", "Lineage", "Limitations"):
        assert f"## {section}" in card


def test_model_card_tolerates_missing_shapes_and_scales_error_metric_gaps():
    card = model_card("m", 1, {}, {}, {}, {})
    assert "- Task: n/a" in card and "| 1 | n/a |" in card and "Data fingerprint: `n/a`" in card
    metrics = {
        "test": {"rmse": 100.0},
        "slices": {"city=a": {"rmse": 104.0}, "city=b": {"rmse": 110.0}},
    }
    assert main_metric(metrics) == "rmse"
    latency = {"ms_per_row": {"1": 0.3}}
    card = model_card("m", 1, {"dataset": {"task": "regression"}}, metrics, {}, latency)
    assert "| city=a | n/a | 104.0000 | +4.0000 |  |" in card  # 4% worse: within the gap
    assert "| city=b | n/a | 110.0000 | +10.0000 | gap |" in card
    assert "| 1 | 0.3000 |" in card

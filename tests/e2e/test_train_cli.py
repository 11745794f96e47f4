"""`keel train` through the real command: both demo models clearly beat their baselines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keel.models.family import state_dict
from keel.registry import File, Registry, Stored

KEEL = str(Path(sys.executable).parent / "keel")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "tracking", "workers"), [("churn", "disabled", 1), ("listings", "offline", 0)]
)
def test_train_registers_a_version_that_beats_the_baseline(
    experiment, tracking, workers, ray_session, tmp_path
):
    env = {**os.environ, "WANDB_MODE": tracking}
    proc = subprocess.run(
        [
            KEEL,
            "train",
            f"experiment={experiment}",
            f"ray.address={ray_session}",
            f"paths.root={tmp_path}",
            "ray.progress_bars=false",
            f"tracking.mode={tracking}",
            f"train.num_workers={workers}",  # 0: in this process, where the lines are logged
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"trained {experiment} v1" in proc.stdout
    registry = Registry(str(tmp_path / "registry"))
    production = registry.get(experiment, "production")  # first version passing the floor
    assert production.version == 1
    metrics = registry.read_json(production, "metrics.json")
    test, base = metrics["test"], metrics["baseline"]
    if experiment == "churn":
        assert test["roc_auc"] >= base["roc_auc"] + 0.15
    else:
        assert test["r2"] >= 0.7 and base["r2"] < 0.05
    assert metrics["slices"] and len(metrics["history"]) >= 1
    # one progress line per epoch, carried from Ray Train's controller to this console (or
    # logged by the loop itself in this process)
    epochs = re.findall(r"epoch (\d+)/\d+  train_loss", proc.stdout + proc.stderr)
    assert [int(e) for e in epochs] == list(range(1, len(metrics["history"]) + 1))
    assert set(registry.read_json(production, "latency.json")["ms_per_row"]) == {"1", "32", "256"}
    lineage = registry.read_json(production, "lineage.json")
    assert lineage["data_fingerprint"].startswith("rows=") and lineage["seed"] == 0
    assert "## Metrics" in registry.read_text(production, "MODEL_CARD.md")
    state = state_dict(Stored(registry, production).weights(), production.uri(File.weights))
    assert all(hasattr(t, "shape") for t in state.values())
    assert ("wandb run" in proc.stdout) == (tracking == "offline")  # the summary names it
    if tracking == "offline":
        runs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(runs) == 1 and runs[0].stat().st_size > 0
        logged = runs[0].read_bytes()  # the offline log that `wandb sync` uploads
        for key in (b"val_loss", b"test/r2", b"baseline/r2", b"registry/version", b"slices"):
            assert key in logged

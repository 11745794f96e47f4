"""`keel monitor --every`: a failing verdict submits `keel retrain` as a Ray job.

A real local Ray cluster (`ray start --head`, its own ports, so it coexists with the test
session's Ray) serves the Jobs API. The command monitors a log of concept-shifted traffic,
submits the retraining job to the cluster, waits for it (`--runs 1`) and exits. The registry
and the job's decision record show the outcome.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ray_nodes import BIN, node_env, ray_cluster

from keel import storage
from keel.config import load
from keel.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path):
    """A one-node Ray cluster; yields its GCS address."""
    with ray_cluster(tmp_path, node_cpus=[2]) as c:
        yield c.address


@pytest.mark.slow
def test_failing_verdict_submits_retrain_as_a_ray_job(own_root, retrainable, log_traffic, cluster):
    overrides = retrainable
    log_traffic(load(overrides), seed=41, rows=3000, concept=1.0)
    before = Registry(f"{own_root}/registry").stages("churn").production
    done = subprocess.run(
        [BIN / "keel", "monitor", *overrides, f"ray.address={cluster}", "--every=1s", "--runs=1"],
        cwd=ROOT,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "FAIL  (retraining asked)" in done.stdout
    assert "SUCCEEDED" in done.stdout, done.stdout[-3000:]
    (decision,) = Path(own_root, "reports", "churn", "retrain").glob("*/decision.json")
    record = storage.read_json(str(decision))
    # the job judged a challenger trained on the shifted traffic against the champion
    assert record["challenger"]["holdout"]["roc_auc"] > record["champion"]["holdout"]["roc_auc"]
    after = Registry(f"{own_root}/registry").stages("churn")
    if record["promoted"]:
        assert after.production == record["challenger"]["version"] != before
        assert after.history[-1].reason.startswith("retrain:")
    else:
        assert after.production == before, record["reason"]

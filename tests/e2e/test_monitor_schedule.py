"""`keel monitor --every`: a failing verdict submits `keel retrain` as a Ray job.

A real local Ray cluster (`ray start --head`, its own ports, so it coexists with the test
session's Ray) serves the Jobs API. The command monitors a log of concept-shifted traffic,
submits the retraining job to the cluster, waits for it (`--runs 1`) and exits. The registry
and the job's decision record show the outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel import storage
from keel.config import load
from keel.registry import Registry

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A one-node Ray cluster in its own process group; yields its GCS address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    port = free_port()
    log = open(tmp_path / "ray-head.log", "w")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(
        [
            BIN / "ray",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
        ],
        env={**env, "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while subprocess.run(
        [BIN / "ray", "status", f"--address={address}"], capture_output=True
    ).returncode:
        failed = head.poll() is not None or time.monotonic() > deadline
        assert not failed, (tmp_path / "ray-head.log").read_text()[-3000:]
        time.sleep(2)
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # SIGTERM would drain the node for 30 s first
    head.wait(timeout=60)
    log.close()
    current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would remove
    if current.exists() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


@pytest.mark.slow
def test_failing_verdict_submits_retrain_as_a_ray_job(own_root, log_traffic, cluster):
    overrides = [
        "experiment=churn",
        f"paths.root={own_root}",
        "slo.quality_floor.roc_auc=0.65",
        "monitor.retrain.recent_weight=3",
        "monitor.retrain.original_fraction=0.2",
        "train.epochs=4",
        "ray.progress_bars=false",
    ]
    log_traffic(load(overrides), seed=41, rows=3000, concept=1.0)
    before = Registry(f"{own_root}/registry").stages("churn")["production"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KEEL_PROJECT_ROOT")}
    done = subprocess.run(
        [BIN / "keel", "monitor", *overrides, f"ray.address={cluster}", "--every=1s", "--runs=1"],
        cwd=ROOT,
        env={**env, "WANDB_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
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
        assert after["production"] == record["challenger"]["version"] != before
        assert after["history"][-1]["reason"].startswith("retrain:")
    else:
        assert after["production"] == before, record["reason"]

"""Faults: a process killed mid-way leaves nothing half-done and loses nothing acknowledged.

- `keel retrain` is killed with SIGKILL while it trains the challenger (its Ray Train run on the
  shared session): the registry shows no new version and the same stages, and the next
  `keel retrain` runs and promotes as if the first had never started.
- A Serve replica is killed with SIGKILL under load: the failed requests are counted and few,
  Serve replaces the replica by itself, and every prediction acknowledged before or after is in
  the log exactly once (the new replica writes what the dead one had spooled).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ray_nodes import BIN

from benchmarks import loadgen
from keel import prediction_log as plog
from keel.config import load
from keel.data import synthetic
from keel.data.batch import json_rows
from keel.monitoring.monitor import run as monitor
from keel.registry import Registry
from keel.serving import service

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_killed_retrain_leaves_no_partial_version_and_the_next_one_runs(
    retrainable, log_traffic, ray_session
):
    overrides = retrainable
    cfg = load(overrides)
    log_traffic(cfg, seed=51, rows=3000, concept=1.0)
    assert monitor(cfg).verdict.retrain is True
    registry = Registry(cfg.paths.registry)
    versions, stages = registry.versions("churn"), registry.stages("churn")
    command = [BIN / "keel", "retrain", *overrides, f"ray.address={ray_session}"]

    retrain = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches all of it
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(retrain.stdout), daemon=True).start()
    try:
        _wait_for(lines, "training a challenger", retrain)
        # killed once training is under way: a Train worker has finished the first of its 4
        # epochs (and checkpointed it), three are left before anything is registered
        _wait_for(lines, "epoch 1/4", retrain)
    finally:
        os.killpg(retrain.pid, signal.SIGKILL)
        retrain.wait(timeout=30)
    assert retrain.returncode == -signal.SIGKILL
    assert not any("registered churn" in line for line in lines), "killed too late"
    assert registry.versions("churn") == versions  # nothing half-registered is visible
    assert registry.stages("churn") == stages

    # the next one may train in its own process: what is under test is what the killed one left
    again = subprocess.run(
        [*command, "train.num_workers=0"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    after = registry.versions("churn")
    assert [v.version for v in after] == [*(v.version for v in versions), versions[-1].version + 1]
    assert registry.stages("churn").production == after[-1].version  # promoted


@pytest.mark.slow
def test_a_serve_replica_killed_under_load_loses_no_acknowledged_prediction(
    own_root, ray_session, serve_port, session_workers
):
    spool = f"{own_root}/spool"
    cfg = load(
        [
            f"paths.root={own_root}",
            "ray.progress_bars=false",
            f"serve.port={serve_port}",
            "+serve.autoscaling.min_replicas=2",  # fused: the ingress is what scales
            "serve.log.flush_seconds=600",  # nothing written before the kill: only spooled
            f"serve.log.spool={spool}",
        ]
    )
    churn = load(
        ["experiment=churn", "dataset.source.rows=100", "dataset.source.invalid_fraction=0"]
    )
    rows = json_rows(synthetic.generate(churn.dataset), drop=(churn.dataset.target,))
    payloads = [json.dumps({"instances": rows[i : i + 10]}).encode() for i in range(0, 100, 10)]
    base = service.start(cfg)
    url = f"{base}/v1/models/churn:predict"

    def ingress_pids() -> list[int]:  # Ray titles an actor's process with its class
        title = "ray::ServeReplica:keel:Ingress"
        return sorted(p.pid for p, cmdline in session_workers().items() if cmdline[:1] == [title])

    outcome: dict = {}
    total = 3_000
    try:
        load_thread = threading.Thread(
            target=lambda: outcome.update(
                result=loadgen.run(url, payloads, concurrency=32, total=total, keep_answers=True)
            )
        )
        load_thread.start()
        time.sleep(4)  # both replicas are answering
        victim = ingress_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        orphans = [f for _, _, files in os.walk(spool) for f in files if f".{victim}-" in f]
        assert orphans, "the killed replica had spooled nothing: the test proves nothing"
        while not (len(pids := ingress_pids()) == 2 and victim not in pids):
            assert time.monotonic() - killed < 120, "Serve did not replace the killed replica"
            time.sleep(0.2)
        recovered_s = time.monotonic() - killed
        load_thread.join(timeout=300)
        after = loadgen.run(url, payloads, concurrency=8, total=200, keep_answers=True)
    finally:
        service.stop(cfg)
    result = outcome["result"]
    assert result.ok + result.failed == total
    assert result.failed <= 64, result.statuses  # those in flight at the kill, not an outage
    assert after.failed == 0, after.statuses  # recovered
    acknowledged = Counter(
        p["request_id"]
        for answer in [*result.answers, *after.answers]
        for p in json.loads(answer)["predictions"]
    )
    logged = Counter(
        plog.read(plog.predictions_dir(cfg.paths.logs, "churn"))["request_id"].to_pylist()
    )
    assert all(logged[rid] == 1 for rid in acknowledged), "an acknowledged row lost or doubled"
    unacknowledged = set(logged) - set(acknowledged)  # answered by the dying replica, not sent
    assert len(unacknowledged) <= 10 * result.failed
    assert not [f for _, _, files in os.walk(spool) for f in files]  # every segment written
    print(
        f"replica killed under load: {total:,} requests, {result.failed} failed "
        f"({dict(result.statuses)}), replaced in {recovered_s:.1f} s, "
        f"{len(acknowledged):,} acknowledged rows all logged once, "
        f"{len(unacknowledged)} logged but unanswered"
    )


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in list(lines)):
        assert proc.poll() is None, "".join(lines)[-4000:]
        assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(lines)[-4000:]
        time.sleep(0.2)

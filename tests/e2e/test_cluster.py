"""keel on a real two-node Ray cluster, with every path on S3 (a moto server on loopback).

`keel submit` sends train (two Train workers SPREAD over both nodes, the second node's raylet
killed mid-run: training resumes from its checkpoint on the head), serve, monitor and retrain
to the cluster's Jobs API; all but train run on the node that remains. Registry, logs,
reports and checkpoints live in the bucket; the test reads them there. The nodes hold the S3
settings in their environment, as cluster nodes would hold an instance profile.

`keel monitor --every` runs against the same cluster (one Ray start for both: each costs ~20 s
here): a failing verdict submits `keel retrain` as a Ray job, on local paths.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests
from ray_nodes import BIN, Cluster, node_env, ray_cluster, state

from keel import prediction_log as plog
from keel import storage, submission
from keel.config import load
from keel.registry import Registry
from keel.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    # a node that stops answering is declared dead after 3 health checks 1 s apart (Ray's
    # defaults: 5, 3 s apart), so training on a lost node fails and resumes sooner
    health = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    with ray_cluster(
        tmp_path_factory.mktemp("cluster"), node_cpus=[2, 2], env={**s3, **health}
    ) as c:
        yield c


def keel(*args: str, env: dict[str, str], timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "keel", *args],
        cwd=ROOT,
        env=node_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submit(cluster: Cluster, env, job: str, *args: str) -> subprocess.CompletedProcess:
    return keel("submit", job, *args, f"--address={cluster.dashboard}", env=env)


def job_id(out: str) -> str:
    line = next(line for line in out.splitlines() if " as Ray job " in line)
    return line.rsplit(" ", 1)[-1]


def ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:  # not up yet, or still deploying
        return False


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return result


def _spread(cluster: Cluster, checkpoints: str) -> set[str]:
    """The nodes of the run's live Train workers, once two workers live on two nodes and the
    run has registered a checkpoint (resuming uses the registered ones); empty until then."""
    workers = state(cluster.dashboard, "actors", class_name="RayTrainWorker", state="ALIVE")
    nodes = {w["node_id"] for w in workers}
    if len(nodes) < 2:
        return set()
    for found in storage.list_dir(checkpoints, recursive=True):
        if found.path.endswith("checkpoint_manager_snapshot.json"):
            with contextlib.suppress(ValueError, OSError):  # being written right now
                if storage.read_json(f"s3://{found.path}").get("checkpoint_results"):
                    return nodes
    return set()


@pytest.mark.slow
def test_the_loop_on_a_two_node_cluster_with_s3_paths(cluster, s3, s3_root, tmp_path):
    root = f"{s3_root}/keel"
    port = free_port()
    common = [
        "experiment=churn",
        f"paths.root={root}",
        "ray.progress_bars=false",
        "slo.quality_floor.roc_auc=0.65",
        f"serve.port={port}",
        "serve.proxy_location=HeadOnly",
        "serve.log.flush_seconds=1",
        "monitor.retrain.recent_weight=3",
        "monitor.retrain.original_fraction=0.2",
    ]
    train = [
        "dataset.source.rows=6000",
        "train.epochs=20",
        "train.num_workers=2",
        "train.placement_strategy=SPREAD",
        "train.cpus_per_worker=0.5",
        "train.early_stopping_patience=0",
        "train.checkpoint_seconds=0",  # a checkpoint every epoch: one to resume from early
        # room for more than one restart: a restart before Ray declares the node dead may
        # place a worker on it again
        "train.max_failures=3",
    ]

    # train: two Train workers, one on each node; once a checkpoint is registered the second
    # node's raylet is killed mid-run, and training resumes from the checkpoint on the head
    address = f"--address={cluster.dashboard}"
    followed = tmp_path / "train.out"  # a file: the followed job's log could fill a pipe
    with open(followed, "w") as sink:
        training = subprocess.Popen(
            [BIN / "keel", "submit", "train", *common, *train, "--follow", address],
            cwd=ROOT,
            env=node_env(s3),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )

    def spread() -> set[str]:
        assert training.poll() is None, followed.read_text()[-6000:]
        return _spread(cluster, f"{root}/checkpoints")

    try:
        nodes = wait_until(spread, 300, "a checkpoint and workers on both nodes")
        lost = cluster.kill_raylet(1)  # the worker node
        training.wait(timeout=420)
    finally:
        training.kill()
    out = followed.read_text()
    assert training.returncode == 0, out[-6000:]
    assert "SUCCEEDED" in out
    assert len(nodes) == 2 and lost in nodes  # a worker on the lost node, one on the head
    registry = Registry(f"{root}/registry")
    assert registry.stages("churn").production == 1
    assert [v.version for v in registry.versions("churn")] == [1]  # one version, whole
    history = registry.read_json(registry.get("churn", 1), "metrics.json")["history"]
    assert [h["epoch"] for h in history] == list(range(20))  # every epoch, none twice
    resumed = max(h["resumed_from"] for h in history)
    assert resumed >= 0, "restarted from scratch"
    print(f"node lost after epoch {resumed + 1} of 20; resumed from its checkpoint on the head")
    assert storage.exists(f"{root}/registry/churn/0001/reference.parquet")

    # serve on the cluster, reading the registry from the bucket; drifted traffic with labels
    served = submit(cluster, s3, "serve", *common, "~serve.models.listings", "--no-wait")
    assert served.returncode == 0, (served.stdout + served.stderr)[-4000:]
    serve_job = job_id(served.stdout)
    jobs = submission.connect(cluster.dashboard)

    def serving() -> bool:
        status = jobs.get_job_status(serve_job)
        assert not status.is_terminal(), jobs.get_job_logs(serve_job)[-5000:]
        return ready(f"http://127.0.0.1:{port}/readyz")

    wait_until(serving, 180, "the served app")
    sent = keel(
        "simulate",
        *common,
        "simulate.rows=2000",
        "dataset.source.drift.concept=1",
        env=s3,
        timeout=300,
    )
    assert sent.returncode == 0, (sent.stdout + sent.stderr)[-4000:]
    assert "sent 2,000 rows" in sent.stdout
    # every answered row and every label reaches the bucket (replicas flush each second)
    logs = f"{root}/logs"
    wait_until(
        lambda: (
            plog.read(plog.predictions_dir(logs, "churn")).num_rows == 2000
            and plog.read(plog.feedback_dir(logs)).num_rows == 2000
        ),
        60,
        "2,000 predictions and 2,000 labels in the bucket",
    )
    stopped = keel("jobs", "stop", serve_job, f"--address={cluster.dashboard}", env=s3)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr

    # monitor: the concept shift fails the quality check; the job fails, and so does submit
    monitored = submit(cluster, s3, "monitor", *common, "--follow")
    assert monitored.returncode == 1, (monitored.stdout + monitored.stderr)[-6000:]
    assert "FAILED" in monitored.stdout
    (verdict,) = [
        f.path
        for f in storage.list_dir(f"{root}/reports/churn/monitor", recursive=True)
        if f.path.endswith("verdict.json")
    ]
    verdict = storage.read_json(f"s3://{verdict}")
    assert "quality" in verdict["failed"] and verdict["retrain"]

    # retrain: the challenger, trained on the labeled traffic, replaces the champion
    # as keel pipeline does, the challenger also draws its original rows under the new concept.
    # It trains in the job's driver (train.num_workers=0): Train workers on this cluster, their
    # checkpoints in the bucket and a lost node were tested above, and a run of them costs
    # ~20-30 s of start-up here; small batches give it more steps on ~2,000 rows
    retrained = submit(
        cluster,
        s3,
        "retrain",
        *common,
        "dataset.source.drift.concept=1",
        "train.num_workers=0",
        "train.batch_size=64",
    )
    assert retrained.returncode == 0, (retrained.stdout + retrained.stderr)[-6000:]
    (decision,) = [
        f.path
        for f in storage.list_dir(f"{root}/reports/churn/retrain", recursive=True)
        if f.path.endswith("decision.json")
    ]
    record = storage.read_json(f"s3://{decision}")
    assert record["promoted"], json.dumps({"decision": record, "verdict": verdict}, default=str)
    assert registry.stages("churn").production == record["challenger"]["version"] == 2

    listed = keel("jobs", "list", f"--address={cluster.dashboard}", env=s3)
    assert listed.returncode == 0, listed.stderr
    for job in ("train", "serve", "monitor", "retrain"):
        assert job in listed.stdout
    assert "STOPPED" in listed.stdout and "SUCCEEDED" in listed.stdout


def test_submit_fails_fast_with_a_reason(cluster, s3, tmp_path):
    address = f"--address={cluster.dashboard}"

    wrong = keel("submit", "train", f"--address=http://127.0.0.1:{free_port()}", env=s3)
    assert wrong.returncode == 2
    assert "cannot reach the Ray Jobs API" in wrong.stdout

    bad = keel("submit", "train", "train.epochs=zero", address, env=s3)
    assert bad.returncode == 2
    assert "train.epochs" in bad.stdout

    unknown = keel("submit", "trian", address, env=s3)
    assert unknown.returncode == 2
    assert "unknown job 'trian'" in unknown.stdout

    # no token anywhere: no RAY_AUTH_TOKEN, and a home without ~/.ray/auth_token
    no_token = keel("submit", "train", address, env={**s3, "HOME": str(tmp_path)})
    assert no_token.returncode == 2, no_token.stdout + no_token.stderr
    assert "token" in no_token.stdout and "ray get-auth-token" in no_token.stdout


def test_the_jobs_api_listens_on_localhost_only_and_wants_the_token(cluster):
    """The head starts as cluster.yaml starts it (no --dashboard-host)."""
    port = int(cluster.dashboard.rsplit(":", 1)[1])
    bound = {
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.laddr and c.laddr.port == port and c.status == "LISTEN"
    }
    assert bound == {"127.0.0.1"}, bound
    assert requests.get(f"{cluster.dashboard}/api/jobs/", timeout=10).status_code == 401


@pytest.mark.slow
def test_failing_verdict_submits_retrain_as_a_ray_job(cluster, own_root, retrainable, log_traffic):
    """`keel monitor --every` monitors a log of concept-shifted traffic, submits the retraining
    job to the cluster, waits for it (`--runs 1`) and exits. The registry and the job's
    decision record show the outcome. The challenger trains in the job's driver
    (train.num_workers=0), as in the loop test's `keel submit retrain`."""
    overrides = [*retrainable, "train.num_workers=0"]
    log_traffic(load(overrides), seed=41, rows=3000, concept=1.0)
    before = Registry(f"{own_root}/registry").stages("churn").production
    schedule = ["--every=1s", "--runs=1"]
    done = subprocess.run(
        [BIN / "keel", "monitor", *overrides, f"ray.address={cluster.address}", *schedule],
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
    # ... and won by far more than monitor.retrain.margin: it is promoted, the registry says so
    assert record["promoted"] is True, record["reason"]
    after = Registry(f"{own_root}/registry").stages("churn")
    assert after.production == record["challenger"]["version"] != before
    assert after.history[-1].reason.startswith("retrain:")

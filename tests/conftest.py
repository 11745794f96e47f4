"""Shared fixtures: one Ray session per test process (starting Ray costs ~15 s here).

The tests on Ray run in pytest-xdist workers, whole files to a worker (`-n 2 --dist
loadfile`; tests/suite.sh runs them before the `alone` tests). Each worker starts its own Ray
session, so whatever is global to the machine is per worker here: the Serve port
(`serve_port`) and the processes a test may kill (`session_workers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest

BUCKET = "keel-test"  # the s3 fixture's one bucket

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def make_cfg(tmp_path):
    """Compose a config whose outputs go under this test's tmp_path."""
    from keel.config import load

    def make(*overrides: str):
        return load([f"paths.root={tmp_path / 'out'}", "ray.progress_bars=false", *overrides])

    return make


# Under xdist whole files go to the two workers in this order, the longest first, so that both
# end together (longest processing time first). tests/suite.sh passes --no-loadscope-reorder,
# without which xdist orders files by their number of tests instead: the unit files went first
# and the longest ones started last, and one worker ran on alone for a minute or more. Seconds
# per file in a run of the suite (2026-12-08, 2 workers on 2 cores: the run prints them at its
# end, "seconds per file"); files not listed (each under 5 s) follow in collection order.
FILE_SECONDS = {
    "integration/test_serving.py": 340,  # 391 s before the batch side ran once for both apps
    "integration/test_training.py": 270,
    "e2e/test_cluster.py": 250,
    "e2e/test_own_data.py": 205,
    "integration/test_trees.py": 170,
    "e2e/test_notebooks.py": 130,
    "e2e/test_faults.py": 98,
    "e2e/test_train_cli.py": 66,
    "e2e/test_cli.py": 53,
    "e2e/test_deploy_cli.py": 51,
    "integration/test_predict.py": 44,
    "integration/test_monitoring.py": 42,
    "integration/test_bench_sides.py": 41,
    "integration/test_log_faults.py": 38,
    "integration/test_autoscaling.py": 35,
    "integration/test_runtime.py": 30,
    "unit/test_config.py": 27,
    "integration/test_sources.py": 27,
    "e2e/test_serve_cli.py": 21,
    "integration/test_registry_writers.py": 21,
    "e2e/test_registry_cli.py": 18,
    "integration/test_features_on_ray.py": 16,
    "integration/test_own_files.py": 13,
    "unit/test_deploy.py": 12,
    "unit/test_traffic_table.py": 9,
    "integration/test_validation.py": 7,
    "unit/test_bench.py": 7,
    "unit/test_retrain_data.py": 6,
    "unit/test_scaffold.py": 6,
    "unit/test_features.py": 5,
}


def pytest_collection_modifyitems(config, items):
    """Under xdist, the longest files first (FILE_SECONDS); the order within a file stays as
    written."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    tests = Path(__file__).parent
    if stale := [f for f in FILE_SECONDS if not (tests / f).is_file()]:
        raise pytest.UsageError(f"tests/conftest.py FILE_SECONDS names no test file: {stale}")

    def seconds(item) -> int:
        return FILE_SECONDS.get(item.path.relative_to(tests).as_posix(), 0)

    items.sort(key=lambda item: -seconds(item))  # a stable sort


# Seconds per file and per xdist worker, summed from every test's setup, call and teardown as
# the reports arrive in the controlling process; printed at the end of a run under xdist, to
# keep FILE_SECONDS current and to show whether the two workers ended together.
_FILE_TOTALS: dict[str, float] = {}
_WORKER_TOTALS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    worker = getattr(getattr(report, "node", None), "gateway", None)  # set by xdist
    if worker is None:
        return
    file = report.nodeid.split("::", 1)[0].removeprefix("tests/")
    _FILE_TOTALS[file] = _FILE_TOTALS.get(file, 0.0) + report.duration
    _WORKER_TOTALS[worker.id] = _WORKER_TOTALS.get(worker.id, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _FILE_TOTALS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("seconds per file (for FILE_SECONDS in tests/conftest.py)")
    for file, seconds in sorted(_FILE_TOTALS.items(), key=lambda kv: -kv[1])[:30]:
        write(f"{seconds:8.1f}  {file}")
    write("busy: " + ", ".join(f"{w} {s:.0f} s" for w, s in sorted(_WORKER_TOTALS.items())))


@pytest.fixture(scope="session")
def serve_port() -> int:
    """The Serve proxy port of this worker's Ray session (fixed by whoever starts Serve first):
    KEEL_TEST_SERVE_PORT (8020: not Serve's default, so a developer's own `keel serve` does
    not collide) plus the xdist worker's index; set it apart to run two pytest sessions at once."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(os.environ.get("KEEL_TEST_SERVE_PORT", "8020")) + int(worker.removeprefix("gw"))


@pytest.fixture(scope="session")
def session_workers(ray_session):
    """A function finding the worker processes of this test process's Ray (Ray's workers are
    its raylet's children): never another xdist worker's, whose Ray runs beside this one."""
    import psutil
    import ray

    (raylet,) = ray._private.worker._global_node.all_processes["raylet"]

    def workers() -> dict[psutil.Process, list[str]]:
        """Each live worker with its command line (Ray titles an actor's process by class)."""
        found = {}
        for process in psutil.Process(raylet.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):  # ended since it was listed
                found[process] = process.cmdline()
        return found

    return workers


class S3Server:
    """moto's S3-compatible server on a loopback port; `stop` and `start` again keep the
    port, and the buckets and objects (moto keeps them in this process)."""

    def __init__(self) -> None:
        from keel.runtime import free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def s3_server(monkeypatch_module):
    """An S3-compatible server on loopback with one bucket (s3_root), which this process's
    environment points S3 clients at."""
    import pyarrow.fs as pafs

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
    server = S3Server()
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "keel-test",
        "AWS_SECRET_ACCESS_KEY": "keel-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.endpoint,
    }
    for key, value in env.items():  # this process reads the bucket too
        monkeypatch_module.setenv(key, value)
    server.env = env
    pafs.S3FileSystem(endpoint_override=server.endpoint, allow_bucket_creation=True).create_dir(
        BUCKET
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server) -> dict[str, str]:
    """The env that points S3 clients at s3_server (this process's environment holds it too)."""
    return s3_server.env


@pytest.fixture
def s3_root(s3) -> str:
    """The S3 server's bucket, as a URI for paths.root."""
    return f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """Start the embedded local Ray once; yields its address for subprocesses to join."""
    import ray

    from keel import runtime
    from keel.config import load

    cfg = load(["ray.num_cpus=2", "ray.progress_bars=false"])
    runtime.ensure(cfg)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# Small but real: both demo models trained into one registry, shared by the serving,
# batch-inference and monitoring tests. Churn gets a second version for promotion. They train
# in this process (Ray Train's local mode): what they are shared for is the versions, and
# tests/integration/test_training.py tests the Train workers' own paths.
TINY = ("dataset.source.rows=3000", "train.epochs=2", "train.num_workers=0")


@pytest.fixture(scope="session")
def trained_root(ray_session, tmp_path_factory):
    """paths.root of a registry holding churn v1 (production, an MLP), churn v2 (candidate,
    XGBoost) and listings v1 (production, an MLP). Trained once per run: under xdist the first
    worker to ask trains (three in-process runs) while the other waits on a lock in the
    run's shared temp directory, then reads the same registry. Tests copy it before changing
    stages."""
    import fcntl
    import shutil

    from keel.config import load
    from keel.training.run import train

    run = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run = run.parent  # this run's directory, above each worker's own
    root = run / "trained" / "out"
    done = run / "trained" / "done"
    with open(run / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed try left: versions restart
            common = (f"paths.root={root}", "ray.progress_bars=false", *TINY)
            floors = {
                "churn": "slo.quality_floor.roc_auc=0",
                "listings": "slo.quality_floor.r2=-1e9",
            }
            # churn v2 is gradient-boosted trees: every test that serves, canaries, shadows,
            # promotes or batch-predicts v2 beside v1 does it across model families
            for name, seed, model in (
                ("churn", 0, ()),
                ("churn", 1, ("model=xgboost", "model.trees.rounds=40")),
                ("listings", 0, ()),
            ):
                overrides = [f"experiment={name}", floors[name], f"train.seed={seed}", *model]
                train(load([*common, *overrides]))
            done.touch()
    return str(root)


@pytest.fixture
def own_root(trained_root, tmp_path) -> str:
    """paths.root holding a copy of the shared registry: for tests that move stages."""
    import shutil

    root = tmp_path / "own"
    shutil.copytree(f"{trained_root}/registry", root / "registry")
    return str(root)


@pytest.fixture
def retrainable(own_root) -> list[str]:
    """Overrides for churn on own_root under which concept-shifted traffic fails the monitor
    and a retrained challenger passes the floor."""
    return [
        "experiment=churn",
        f"paths.root={own_root}",
        "slo.quality_floor.roc_auc=0.65",
        "monitor.retrain.recent_weight=3",
        "monitor.retrain.original_fraction=0.2",
        "train.epochs=4",
        "ray.progress_bars=false",
    ]


@pytest.fixture
def log_traffic():
    """Write traffic into the serving logs as a replica would: generated rows (with drift
    knobs) predicted by the production version, request rows and ground-truth feedback."""
    return _log_traffic


def _log_traffic(cfg, seed: int, rows: int = 2000, covariate=None, concept: float = 0.0):
    """Generated rows -> production predictions -> prediction, request and feedback logs."""
    import dataclasses
    import json
    import uuid

    import pyarrow as pa

    from keel import prediction_log as plog
    from keel.data.synthetic import generate
    from keel.registry import Registry
    from keel.serving.predictor import Predictor

    ds = cfg.dataset
    drift = dataclasses.replace(ds.source.drift, covariate=covariate or {}, concept=concept)
    source = dataclasses.replace(ds.source, seed=seed, rows=rows, invalid_fraction=0.0, drift=drift)
    table = generate(dataclasses.replace(ds, source=source))
    predictor = Predictor.load(Registry(cfg.paths.registry), ds.name)
    raw = predictor.predict(table)
    times = [c for c, spec in ds.columns.items() if spec.type == "timestamp"]
    inputs = [  # as JSON brings them: times as text
        {**row, **{c: str(row[c]) for c in times}}
        for row in table.drop_columns([ds.target]).to_pylist()
    ]
    ids = [uuid.uuid4().hex for _ in inputs]
    now = plog.now()

    def write(directory: str, schema: pa.Schema, rows: list[dict]) -> None:
        plog.write(directory, pa.Table.from_pylist(rows, schema=schema))

    schema = plog.prediction_schema(predictor.request_columns)
    fixed = dict(ts=now, model=ds.name, version=predictor.version.version, variant="primary")
    write(
        plog.predictions_dir(cfg.paths.logs, ds.name),
        schema,
        [
            plog.prediction_row(
                {**fixed, "request_id": i, "latency_ms": 5.0, "prediction": float(p)},
                row,
            )
            | {"output": "{}"}
            for i, row, p in zip(ids, inputs, raw, strict=True)
        ],
    )
    write(
        plog.requests_dir(cfg.paths.logs, ds.name),
        plog.REQUEST_SCHEMA,
        [
            dict(ts=now, model=ds.name, status=200, reason=None, rows=20, latency_ms=5.0)
            for _ in range(rows // 20)
        ],
    )
    labels = table[ds.target].to_pylist()
    write(
        plog.feedback_dir(cfg.paths.logs),
        plog.FEEDBACK_SCHEMA,
        [
            {"request_id": i, "ts": now, "label": json.dumps(y)}
            for i, y in zip(ids, labels, strict=True)
        ],
    )
    return ids

"""The serving logs' storage failing under a served app (issue 21, faults 1 and 2).

A full disk: the prediction log (paths.logs) and the spool each on a small tmpfs of their own,
filled to the last byte while requests arrive. With the log's disk full, requests are answered
and their rows wait in the spool while flushes retry with backoff; with the spool's disk full
too, requests and feedback are refused with a 503 that says why, never acknowledged; once space
returns, every acknowledged row is written exactly once and no failed try is left behind.

An object store down: paths.logs on an S3-compatible server that is stopped mid-run and
started again. Requests are answered throughout, and every acknowledged row is written once
when the store is back."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from keel import prediction_log
from keel.config import load
from keel.data import synthetic
from keel.data.batch import json_rows
from keel.serving import service
from keel.serving.graph import ingress_options

MIB = 8  # each filesystem's size: the spool and the log of a few hundred rows fit many times
REQUESTS = 30  # per phase, 4 instances each
MODEL = "churn"


@pytest.fixture
def small_disk(tmp_path):
    """Mounts a MIB-sized tmpfs at a new directory and returns it; unmounted after the test.
    Mounting needs root or CAP_SYS_ADMIN, as CI's machine and this one have."""
    mounted: list[Path] = []

    def mount(name: str) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={MIB}m,mode=0700", "keel-test", str(directory)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"mounting a {MIB} MiB tmpfs failed: {done.stderr}"
        mounted.append(directory)
        return directory

    yield mount
    for directory in mounted:
        subprocess.run(["umount", "--lazy", str(directory)], check=False)


def _fill(disk: Path) -> Path:
    """Takes every free byte of `disk` with one file (returned: delete it to free them)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def _instances(n: int) -> list[dict]:
    cfg = load(
        [
            f"experiment={MODEL}",
            f"dataset.source.rows={n}",
            "dataset.source.seed=7",
            "dataset.source.invalid_fraction=0",
        ]
    )
    return json_rows(synthetic.generate(cfg.dataset), drop=(cfg.dataset.target,))


def test_replicas_carry_only_the_env_vars_their_job_lacks():
    """The store's env above reaches the replicas as their own runtime env; an actor with one
    starts slower, so a replica gets one only for what this process's Ray was started without."""
    same = load(["serve.fused=false"])
    assert "runtime_env" not in ingress_options(same, {})["ray_actor_options"]
    other = load(["serve.fused=false", "+ray.env_vars.KEEL_TEST_FLAG=blue"])
    env = ingress_options(other, {})["ray_actor_options"]["runtime_env"]
    assert env == {"env_vars": {"KEEL_TEST_FLAG": "blue"}}


def _config(trained_root: str, tmp_path: Path, port: int, logs: str, spool: str, *extra: str):
    """A fused app serving a copy of the shared registry, its logs under `logs`, spooled in
    `spool`, flushed every half second."""
    root = tmp_path / "out"
    shutil.copytree(Path(trained_root) / "registry", root / "registry")
    return load(
        [
            f"paths.root={root}",
            f"paths.logs={logs}",
            f"serve.log.spool={spool}",
            "serve.log.flush_seconds=0.5",
            "serve.fused=true",
            f"serve.port={port}",
            "ray.progress_bars=false",
            *extra,
        ]
    )


def _phases(n: int) -> list[list[dict]]:
    """The instances of n phases of REQUESTS requests of 4 rows, none repeated."""
    instances = _instances(4 * REQUESTS * n)
    return [instances[i * 4 * REQUESTS : (i + 1) * 4 * REQUESTS] for i in range(n)]


def _post(base: str, phase: str, instances: list[dict], acknowledged: set[str]) -> Counter:
    """REQUESTS predict requests and one feedback post; their statuses, by phase and route.
    A 503 must say why (the spool's disk) and acknowledge nothing."""
    statuses: Counter = Counter()
    session = requests.Session()
    for i in range(REQUESTS):
        batch = instances[4 * i : 4 * i + 4]
        r = session.post(f"{base}/v1/models/{MODEL}:predict", json={"instances": batch}, timeout=30)
        statuses[(phase, "predict", r.status_code)] += 1
        if r.status_code == 200:
            acknowledged.update(p["request_id"] for p in r.json()["predictions"])
        else:
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "log_unavailable", r.text
            assert "No space left on device" in r.text and "retry later" in r.text, r.text
    if acknowledged:
        label = {"request_id": sorted(acknowledged)[0], "label": 1}
        r = session.post(f"{base}/v1/feedback", json=label, timeout=30)
        statuses[(phase, "feedback", r.status_code)] += 1
        assert r.status_code in (200, 503), r.text
    return statuses


def _logged(cfg) -> Counter:
    directory = prediction_log.predictions_dir(cfg.paths.logs, MODEL)
    return Counter(row["request_id"] for row in prediction_log.read(directory).to_pylist())


class Served:
    """A started app and what was sent to it: statuses by (phase, route, status), and the
    request ids acknowledged."""

    def __init__(self, cfg) -> None:
        self.cfg, self.base = cfg, service.start(cfg)
        self.statuses: Counter = Counter()
        self.acknowledged: set[str] = set()

    def post(self, phase: str, instances: list[dict]) -> None:
        self.statuses += _post(self.base, phase, instances, self.acknowledged)

    def behind(self) -> bool:
        """Whether acknowledged rows are still waiting in the spool."""
        return len(_logged(self.cfg)) < len(self.acknowledged)

    def caught_up(self, timeout: float = 30) -> None:
        _wait(lambda: not self.behind(), timeout)


@contextlib.contextmanager
def _serving(cfg) -> Iterator[Served]:
    served = Served(cfg)
    try:
        yield served
    finally:
        service.stop(cfg)
    print(dict(sorted(served.statuses.items())))


def test_a_full_disk_refuses_with_503_and_loses_no_acknowledged_row(
    trained_root, serve_port, small_disk, tmp_path
):
    logs, spool = small_disk("logs"), small_disk("spool")
    cfg = _config(trained_root, tmp_path, serve_port, str(logs), str(spool))
    phases = _phases(4)
    with _serving(cfg) as app:
        app.post("room", phases[0])
        app.caught_up()

        log_filler = _fill(logs)  # the log's disk full: rows wait in the spool
        app.post("log full", phases[1])
        time.sleep(2)  # flushes fail and back off
        assert app.behind()

        spool_filler = _fill(spool)  # the spool's disk full too: nothing can be accepted
        app.post("both full", phases[2])

        os.remove(log_filler)
        os.remove(spool_filler)
        app.post("room again", phases[3])
        # the last failed flush backed off at most 16 s (0.5 s doubled per failure)
        app.caught_up(timeout=60)
        assert requests.get(f"{app.base}/readyz", timeout=30).status_code == 200

    statuses = app.statuses
    for phase in ("room", "log full", "room again"):
        assert statuses[(phase, "predict", 200)] == REQUESTS, statuses
        assert statuses[(phase, "feedback", 200)] == 1, statuses
    # a few appends may still fit in the spool's last pages; the rest are refused
    assert statuses[("both full", "predict", 503)] >= REQUESTS - 5, statuses
    assert statuses[("both full", "feedback", 503)] == 1, statuses

    logged = _logged(cfg)
    assert set(logged) == app.acknowledged  # every acknowledged row, and nothing refused
    assert set(logged.values()) == {1}  # each once
    feedback = prediction_log.read(prediction_log.feedback_dir(cfg.paths.logs))
    assert feedback.num_rows == 3
    leftovers = [name for _, _, names in os.walk(logs) for name in names if ".tmp-" in name]
    assert not leftovers, leftovers  # failed writes removed their temporary files
    assert not [name for _, _, names in os.walk(spool) for name in names]  # all written


def test_an_object_store_stopped_mid_run_loses_no_acknowledged_row(
    trained_root, serve_port, s3_server, s3_root, tmp_path
):
    # the replicas' store and credentials: this process's Ray started before the store did
    store = [f"+ray.env_vars.{key}={value}" for key, value in s3_server.env.items()]
    # a spool of its own, not the machine's, which other runs share
    spool = str(tmp_path / "spool")
    cfg = _config(trained_root, tmp_path, serve_port, f"{s3_root}/logs", spool, *store)
    phases = _phases(3)
    with _serving(cfg) as app:
        try:
            app.post("up", phases[0])
            app.caught_up()
            s3_server.stop()
            app.post("down", phases[1])
            time.sleep(3)  # flushes fail and back off
            s3_server.start()
            assert app.behind()
            app.post("up again", phases[2])
            app.caught_up(timeout=60)
        finally:
            if s3_server.server is None:  # the app's last flush needs its store
                s3_server.start()

    assert app.statuses == Counter(
        {
            (phase, route, 200): n
            for phase in ("up", "down", "up again")
            for route, n in (("predict", REQUESTS), ("feedback", 1))
        }
    )
    logged = _logged(cfg)
    assert set(logged) == app.acknowledged and set(logged.values()) == {1}


def _wait(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)

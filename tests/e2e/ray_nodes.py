"""Real Ray clusters on this machine for e2e tests: `ray start` nodes on their own ports.

Every node gets free ports (the dashboard agent would otherwise take 52365, which another Ray
on the machine may hold), and its own temp dir (as its own disk: nodes sharing one would unpack
a job's working_dir over each other). At the end every process a node started is killed with
SIGKILL (SIGTERM drains a node for 30 s; some, such as Serve's HAProxy, leave its process
group).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from keel import submission
from keel.runtime import free_port, own_ray_env

BIN = Path(sys.executable).parent


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a node or a CLI run against it: the venv first on PATH (a job's
    `python` is the cluster's), no address of another Ray, and Ray's token auth on every node
    (a head finding ~/.ray/auth_token turns it on; a worker must then present the token)."""
    env = own_ray_env(os.environ)
    env.pop("KEEL_PROJECT_ROOT", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    fixed = {"RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled", "RAY_AUTH_MODE": "token"}
    return {**env, **fixed, **(extra or {})}


@dataclass
class Cluster:
    address: str  # GCS address, for ray.init and `ray status`
    dashboard: str  # Jobs API URL, for keel submit
    processes: list[subprocess.Popen] = field(default_factory=list)

    def kill_raylet(self, i: int) -> str:
        """SIGKILL node i's raylet, as a machine lost would stop answering (its workers and
        `ray start` end with it); returns the node's id."""
        started = psutil.Process(self.processes[i].pid)
        (raylet,) = [p for p in started.children(recursive=True) if p.name() == "raylet"]
        (node_id,) = [a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--node_id=")]
        raylet.kill()
        return node_id


def _start(args: list[str], env: dict[str, str], log: Path, temp: str) -> subprocess.Popen:
    common = [
        f"--temp-dir={temp}",  # short: Ray's socket paths must fit in 107 bytes
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    with open(log, "w") as out:
        return subprocess.Popen(
            [BIN / "ray", "start", "--block", *args, *common],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def state(dashboard: str, resource: str, **filters: str) -> list[dict]:
    """Rows of the cluster's state API (nodes, actors, ...), over HTTP with keel's auth header.
    (Ray's StateApiClient would ask the Ray this process is connected to, whatever address.)"""
    params = [("limit", "10000"), ("detail", "true")]
    for key, value in filters.items():
        params += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
    answer = requests.get(
        f"{dashboard}/api/v0/{resource}",
        params=params,
        headers=submission.auth_headers(),
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["data"]["result"]["result"]


def alive_nodes(dashboard: str) -> list[str]:
    """Node ids of the cluster's live nodes; empty while its dashboard starts."""
    try:
        return [n["node_id"] for n in state(dashboard, "nodes", state="ALIVE")]
    except Exception:
        return []


def _wait_nodes(dashboard: str, count: int, nodes: list[subprocess.Popen], logs: list[Path]):
    deadline = time.monotonic() + 180
    while True:
        if len(alive_nodes(dashboard)) >= count:
            return
        dead = [log for node, log in zip(nodes, logs, strict=True) if node.poll() is not None]
        assert not dead and time.monotonic() < deadline, "\n".join(
            log.read_text()[-3000:] for log in (dead or logs)
        )
        time.sleep(2)


def _joined(dashboard: str, count: int, node: subprocess.Popen) -> bool:
    """Whether `count` nodes are alive before `node` dies (or 180 s pass)."""
    deadline = time.monotonic() + 180
    while node.poll() is None and time.monotonic() < deadline:
        if len(alive_nodes(dashboard)) >= count:
            return True
        time.sleep(2)
    return False


def _kill_group(node: subprocess.Popen) -> None:
    """What a failed `ray start --block` left in its session (its raylet, its agents)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)  # start_new_session: the group is the node's pid
    node.wait(timeout=60)


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(tree, timeout=30)


def _start_retrying(
    args: Callable[[], list[str]],
    joined: Callable[[subprocess.Popen], bool],
    env: dict[str, str],
    log: Path,
    temps: list[str],
    i: int,
) -> subprocess.Popen:
    """Start node `i` with `args()` until `joined(node)`. Ray gives a starting node a fixed
    30 s to register with the GCS; on two loaded cores a start can miss it ("The current node
    timed out during startup"): such a start is cleared away and tried again with new
    arguments (new ports), twice at most. Any other death is returned, for the caller to fail
    with its log."""
    for _ in range(2):
        node = _start(args(), env, log, temps[i])
        if joined(node) or "timed out during startup" not in log.read_text():
            return node
        _kill_group(node)
        temps.append(temps[i])  # the failed start's, removed with the others at the end
        temps[i] = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    return _start(args(), env, log, temps[i])  # the last try: the caller waits on it


@contextlib.contextmanager
def ray_cluster(
    tmp_path: Path, node_cpus: list[float], env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A head and len(node_cpus) - 1 worker nodes, the head with the dashboard (Jobs API)."""
    env = node_env(env)
    logs = [tmp_path / f"ray-node{i}.log" for i in range(len(node_cpus))]
    temps = [tempfile.mkdtemp(prefix="rn", dir="/tmp") for _ in node_cpus]
    ports: list[int] = []  # the head's GCS ports, one per start

    def head() -> list[str]:
        ports.append(free_port())
        cluster.address, cluster.dashboard = (
            f"127.0.0.1:{ports[-1]}",
            f"http://127.0.0.1:{free_port()}",
        )
        return [
            "--head",
            f"--port={ports[-1]}",
            f"--num-cpus={node_cpus[0]}",
            "--include-dashboard=true",
            f"--dashboard-port={cluster.dashboard.rsplit(':', 1)[1]}",
            f"--ray-client-server-port={free_port()}",
        ]

    cluster = Cluster("", "")
    try:
        started = _start_retrying(
            head, lambda n: _joined(cluster.dashboard, 1, n), env, logs[0], temps, 0
        )
        cluster.processes.append(started)
        _wait_nodes(cluster.dashboard, 1, cluster.processes, logs[:1])
        for i, cpus in enumerate(node_cpus[1:], start=1):
            worker = [f"--address={cluster.address}", f"--num-cpus={cpus}"]
            node = _start_retrying(
                lambda w=worker: w,
                lambda n, count=i + 1: _joined(cluster.dashboard, count, n),
                env,
                logs[i],
                temps,
                i,
            )
            cluster.processes.append(node)
        _wait_nodes(cluster.dashboard, len(node_cpus), cluster.processes, logs)
        yield cluster
    finally:
        for node in cluster.processes:
            _kill_tree(node.pid)
            node.wait(timeout=60)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would remove
        if current.exists() and any(
            current.read_text().strip().endswith(f":{port}") for port in ports
        ):
            current.unlink()

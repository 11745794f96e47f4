"""Owns ray.init: an embedded local Ray by default, or a connection to a cluster address.

Jobs never call ray.init themselves; they call `ensure(cfg)`. Environment that workers need
(wandb mode, where the project lives) travels in the runtime_env so every node sees it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from keel.config import KeelConfig, project_root
from keel.errors import ConfigError

log = logging.getLogger(__name__)

# Forwarded from the driver's environment to every Ray worker when set.
# AWS_ENDPOINT_URL and the region point pyarrow at an S3-compatible store (paths.root=s3://...);
# credentials come from each node's own environment or instance profile, never from here.
FORWARDED_ENV = (
    "WANDB_MODE",
    "WANDB_DIR",
    "WANDB_SILENT",
    "KEEL_PROJECT_ROOT",
    "KEEL_CONFIG_DIR",  # a config tree outside the project (same machine only)
    "KEEL_MODEL_MODULES",  # where a model config's _target_ may import from
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def worker_env(cfg: KeelConfig) -> dict[str, str]:
    env = {"WANDB_MODE": cfg.tracking.mode.value, "KEEL_PROJECT_ROOT": str(project_root())}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    env.update(cfg.ray.env_vars)
    return env


def cluster_env(cfg: KeelConfig) -> dict[str, str]:
    """The worker env for jobs and apps sent to a cluster: less KEEL_PROJECT_ROOT and
    KEEL_CONFIG_DIR, directories on this machine (submitted jobs bring their own project, conf/
    included, as their working_dir)."""
    env = worker_env(cfg)
    env.pop("KEEL_PROJECT_ROOT", None)
    env.pop("KEEL_CONFIG_DIR", None)
    return env


def ensure(cfg: KeelConfig) -> None:
    """Start or connect to Ray once per process; later calls are no-ops."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    job = _job_env()
    env = cluster_env(cfg) if job is not None else worker_env(cfg)
    os.environ.update(env)
    common = dict(
        namespace=cfg.ray.namespace,
        # Ray refuses a driver env that repeats a key of its job's runtime_env
        runtime_env={"env_vars": {k: v for k, v in env.items() if k not in (job or {})}},
        logging_level=logging.WARNING,
        configure_logging=True,
        # workers' and actors' output (Train's controller polls, Ray Data's per-operator
        # progress) stays in Ray's log files unless asked for
        log_to_driver=cfg.ray.verbose,
    )
    # A Ray job's driver (keel submit, or keel retrain from keel monitor --every) joins its
    # cluster.
    address = cfg.ray.address or ("auto" if job is not None else None)
    if address:
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, **common)
    else:
        log.info("starting an embedded local Ray")
        os.environ.pop("RAY_ADDRESS", None)  # set below by an earlier start in this process
        os.environ.update(_local_env(cfg))  # the Ray started here inherits it
        ray.init(
            address="local",  # never a cluster `ray start` left on this machine
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            include_dashboard=cfg.ray.include_dashboard,
            **common,
        )
        atexit.register(_stop_serve)  # runs before Ray's own exit hook (registered earlier)
    # Tools started from this process (Ray's state API, Train's cleanup actors) must find this
    # cluster, not another Ray on the same machine.
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    configure_data(cfg)
    if not cfg.ray.verbose:
        quiet_ray()


# Ray's driver-side loggers that print per-dataset and per-operator progress at INFO.
RAY_CHATTY_LOGGERS = ("ray.data", "ray.train", "ray.tune", "ray.serve")


def quiet_ray() -> None:
    """Ray's INFO chatter off the console; where its logs are, said once."""
    import ray

    for name in RAY_CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        session = ray._private.worker.global_worker.node.get_session_dir_path()
    except AttributeError:  # a connection without a local node (ray://) has no local logs
        return
    log.info("Ray's own logs: %s/logs (--verbose shows them here)", session)


# Ports Serve binds when HAProxy fronts it, at fixed defaults that a second embedded Ray on the
# machine (a notebook's beside `make demo`, the other test process) would share: HAProxy's
# stats and metrics (8404, 9101: the second Ray could not start Serve), and the fallback proxy
# that HAProxy sends a request to while an app's routes change (8500 HTTP, 9500 gRPC). That
# proxy binds with SO_REUSEPORT, so the kernel handed one Ray's requests to the other Ray's
# proxy: a 404 during an in-place update, or another app's models (twice in the test suite).
SERVE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)


def own_ray_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child process that starts a Ray of its own (`serve run`, `ray start`): less
    the address a Ray started here left in it (which would join that Ray), and with Serve ports
    of its own in place of that Ray's, which it would fail to bind or share."""
    own = {k: v for k, v in env.items() if k not in ("RAY_ADDRESS", *SERVE_PORTS)}
    return {**own, **_free_serve_ports(own)}


def _local_env(cfg: KeelConfig) -> dict[str, str]:
    """ray.local_env, with free Serve ports for this Ray unless the config names them."""
    env = dict(cfg.ray.local_env)
    return {**env, **_free_serve_ports(env)}


def _free_serve_ports(env: Mapping[str, str]) -> dict[str, str]:
    """Free ports for the SERVE_PORTS that `env` leaves unnamed, where it turns HAProxy on."""
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        return {}
    return {var: str(free_port()) for var in SERVE_PORTS if var not in env}


# A port is chosen here and bound later, by another process (HAProxy binds its ports when
# Serve starts, minutes after ray.init). A port the kernel hands out (bind to 0) comes from its
# ephemeral range (32768-60999 on Linux), which every outgoing connection and every Ray worker's
# listener also draws from, so in between it was taken twice in one test run. These come from
# below that range and above Ray's worker ports (10002-19999), drawn at random.
CHOSEN_PORTS = range(20_000, 32_768)
# Between choice and bind a port is still free, so a bind check alone lets two processes on one
# machine choose the same one (the test suite's two processes choose ports by the dozen). Each
# choice is claimed by a file here, seen by every keel process on the machine, for as long as a
# bind may take; a claim older than that is stale and the port may be chosen again.
PORT_CLAIMS = Path(tempfile.gettempdir()) / "keel-port-claims"
CLAIM_SECONDS = 30 * 60


def free_port() -> int:
    """A port nothing listens on now, on any interface, and that no keel process on this
    machine has chosen in the last CLAIM_SECONDS."""
    draw = random.SystemRandom()  # not the seeded global generator: processes must differ
    for _ in range(200):
        port = draw.choice(CHOSEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))  # HAProxy and Serve bind every interface
            except OSError:
                continue
        if _claim(port):
            return port
    raise OSError(
        f"no free port in {CHOSEN_PORTS.start}-{CHOSEN_PORTS.stop - 1} after 200 tries "
        f"(claims of the last {CLAIM_SECONDS // 60} min are in {PORT_CLAIMS})"
    )


def _claim(port: int) -> bool:
    """Claim `port` for this process; False when another holds a claim younger than
    CLAIM_SECONDS. Creating the file with O_EXCL is the atomic test-and-set."""
    path = PORT_CLAIMS / str(port)
    for _ in range(2):  # a stale claim is removed once, then the port claimed as if new
        try:
            PORT_CLAIMS.mkdir(exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):  # another removed it as stale
                if time.time() - path.stat().st_mtime < CLAIM_SECONDS:
                    return False
                path.unlink()
        except PermissionError:  # another user's claims: the bind check alone decides
            return True
    return False


SERVE_SHUTDOWN_SECONDS = 30  # as serve.shutdown() waits for its controller


def _stop_serve() -> None:
    """Shut down Serve in an embedded Ray at exit (a notebook kernel's too): its HAProxy would
    outlive the Ray killed at exit and keep holding the HTTP and metrics ports.

    `serve.shutdown()` waits on a controller call that the controller ends by killing itself,
    and Ray then printed "Task ServeController.graceful_shutdown failed" as the last line of
    every run: the same shutdown is asked here without waiting on that call, then the
    controller is waited for until it is gone (its proxies and replicas go first)."""
    import ray

    if "ray.serve" not in sys.modules or not ray.is_initialized():
        return
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    def controller():
        return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)

    try:
        ray.get(controller().graceful_shutdown.remote(False), timeout=SERVE_SHUTDOWN_SECONDS)
        deadline = time.monotonic() + SERVE_SHUTDOWN_SECONDS
        while time.monotonic() < deadline:
            controller()  # a ValueError once it is gone
            time.sleep(0.1)
        log.warning("Ray Serve was still shutting down after %d s", SERVE_SHUTDOWN_SECONDS)
    except ValueError:  # no controller (any more): Serve is down
        return
    except Exception as e:  # exiting anyway: say why the ports may stay taken
        log.warning("could not shut down Ray Serve at exit: %s", e)


def _job_env() -> dict[str, str] | None:
    """The env vars of the Ray job this process is the driver of; None outside a job."""
    config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if config is None:
        return None
    runtime_env = json.loads(config).get("runtime_env") or {}
    return runtime_env.get("env_vars") or {}


def configure_data(cfg: KeelConfig) -> None:
    """Apply ray.data_context (declared per environment in conf/ray/) to Ray Data."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.ray.progress_bars
    ctx.print_on_execution_start = False
    for key, value in cfg.ray.data_context.items():
        if not hasattr(ctx, key):
            raise ConfigError(f"ray.data_context.{key}: Ray Data has no setting '{key}'")
        setattr(ctx, key, value)

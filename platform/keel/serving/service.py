"""Run the Serve application from Python: `keel serve`, the pipeline, notebooks and tests."""

from __future__ import annotations

import logging
import time

import requests

from keel import runtime
from keel.config import KeelConfig
from keel.errors import KeelError

from .graph import application

log = logging.getLogger(__name__)


class ServeError(KeelError):
    """The Serve application did not start or become ready."""


def url(cfg: KeelConfig) -> str:
    return f"http://{cfg.serve.host}:{cfg.serve.port}"


def start(cfg: KeelConfig, timeout_s: float = 180.0) -> str:
    """Deploy (or update in place) the application and wait until /readyz answers 200."""
    from ray import serve

    runtime.ensure(cfg)
    serve.start(
        proxy_location=cfg.serve.proxy_location,
        http_options={"host": cfg.serve.host, "port": cfg.serve.port},
    )
    log.info("deploying %s with models %s", cfg.serve.app_name, list(cfg.serve.models))
    serve.run(application(cfg), name=cfg.serve.app_name, route_prefix="/", blocking=False)
    base = url(cfg)
    wait_ready(base, timeout_s)
    return base


def wait_ready(base: str, timeout_s: float) -> None:
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.5)
    raise ServeError(f"{base} not ready after {timeout_s:.0f} s (last answer: {last})")


def stop(cfg: KeelConfig) -> None:
    """Delete the application: replicas shut down gracefully and flush their logs."""
    from ray import serve

    serve.delete(cfg.serve.app_name)

"""Run the Serve application from Python: `keel serve`, the pipeline, notebooks and tests."""

from __future__ import annotations

import logging
import time

import requests

from keel import runtime
from keel.config import KeelConfig
from keel.errors import KeelError

from .graph import application
from .settings import ServeSettings

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
        proxy_location=cfg.serve.proxy_location.value,
        http_options={"host": cfg.serve.host, "port": cfg.serve.port},
    )
    log.info("deploying %s with models %s", cfg.serve.app_name, list(cfg.serve.models))
    serve.run(application(cfg), name=cfg.serve.app_name, route_prefix="/", blocking=False)
    base = url(cfg)
    wait_ready(base, timeout_s, ServeSettings.from_config(cfg).fingerprint)
    return base


def wait_ready(base: str, timeout_s: float, settings: str) -> None:
    """Until /readyz answers 200 from the app deployed with `settings` (a fingerprint): an app
    updated in place keeps answering with its previous settings for a while."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/readyz", timeout=5)
            if r.status_code == 200:
                if r.json().get("settings") == settings:
                    return
                last = "200 from the app with its previous settings"
            else:
                last = f"{r.status_code} {r.text[:200]}"
        except (requests.RequestException, ValueError) as e:  # ValueError: not JSON
            last = str(e)
        time.sleep(0.5)
    raise ServeError(f"{base} not ready after {timeout_s:.0f} s (last answer: {last})")


def wait_serving(base: str, model: str, version: int, timeout_s: float = 60.0) -> dict:
    """Wait until the app answers for `model` with `version` (it follows its registry stage
    every serve.reload_seconds); the model's entry in GET /v1/models."""
    deadline, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            listed = requests.get(f"{base}/v1/models", timeout=10).json()["models"]
            (info,) = (m for m in listed if m["model"] == model)
            seen = info["versions"]["primary"]
            if seen == version:
                return {**info, "version": seen}
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise ServeError(f"{base} still answers {model} with v{seen}, not v{version}")


def stop(cfg: KeelConfig) -> None:
    """Delete the application: replicas shut down gracefully and flush their logs."""
    from ray import serve

    serve.delete(cfg.serve.app_name)

"""Jobs on a Ray cluster through Ray's Jobs API: `keel submit JOB` and `keel jobs`.

A submitted job is `python -m keel.cli.JOB OVERRIDES` (a project's own job: `python
jobs/JOB.py`) run on the cluster, with this project as its working_dir (conf/ and jobs/, less
local state such as .venv and outputs) and the keel package shipped beside it as a py_module,
so the cluster runs the code and configs of this checkout.
Ray's token auth: the client sends the token Ray itself would use ($RAY_AUTH_TOKEN, the file
at $RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token). Ray's SDK sends it only when this machine's
RAY_AUTH_MODE is token, which a laptop talking to a remote cluster rarely sets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import keel
from keel import runtime
from keel.app import Flag
from keel.config import KeelConfig, project_root
from keel.errors import KeelError

log = logging.getLogger(__name__)

# Local state that must not travel to the cluster (the package travels as a py_module).
# Ray applies these to the package as well, so "data" would drop keel/data: the project's
# data/ stays home through .gitignore, which Ray honours for the working_dir.
EXCLUDES = [
    "/.git",
    "/.venv",
    "/outputs",
    "/wandb",
    "/platform",
    "/benchmarks",  # the benchmark harness: no job runs it
    "**/__pycache__",
    "**/.ipynb_checkpoints",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
]
CONNECT_TIMEOUT_S = 5.0
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
ADDRESS = Flag(str, "the Ray dashboard, http://HEAD:8265 (else $RAY_API_SERVER_ADDRESS)", "URL")


class SubmitError(KeelError):
    exit_code = 2


def dashboard_url(address: str | None) -> str:
    """The Jobs API URL: --address, else $RAY_API_SERVER_ADDRESS (as Ray's own CLI reads it)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        raise SubmitError(
            "no cluster address: pass --address http://HEAD:8265 (the Ray dashboard; "
            "`ray dashboard cluster.yaml` forwards it to http://127.0.0.1:8265)"
        )
    return address if "://" in address else f"http://{address}"


def connect(url: str):
    """A JobSubmissionClient for the dashboard at `url`, or a SubmitError saying why not."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    _reachable(url)
    # Ray's client would take $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS over the address it is
    # given (a shell's leftover, or this process's own Ray): the address asked for wins here.
    hidden = {k: os.environ.pop(k) for k in ADDRESS_ENV if k in os.environ}
    try:
        return JobSubmissionClient(url, headers=auth_headers())
    except AuthenticationError as e:
        raise _auth_error(url, e) from None
    except ConnectionError as e:
        raise SubmitError(f"{url} does not answer as a Ray Jobs API: {e}") from None
    finally:
        os.environ.update(hidden)


def auth_headers() -> dict[str, str]:
    """The Authorization header for Ray's token auth; empty when no token is found."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def call(what: Callable[[], Any], address: str) -> Any:
    """Run one Jobs API call, turning auth and lookup failures into clear errors."""
    from ray.exceptions import AuthenticationError

    try:
        return what()
    except AuthenticationError as e:
        raise _auth_error(address, e) from None
    except RuntimeError as e:  # the SDK raises RuntimeError for 4xx answers (unknown job id)
        raise SubmitError(str(e).strip().splitlines()[0]) from None


def _reachable(url: str) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if parsed.scheme not in ("http", "https") or not host:
        raise SubmitError(f"--address {url}: expected http://HOST:PORT of the Ray dashboard")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise SubmitError(
            f"cannot reach the Ray Jobs API at {url} ({e}). Is the cluster up, and is this "
            "the dashboard port (8265 by default)?"
        ) from None


def _auth_error(url: str, e: Exception) -> SubmitError:
    first = str(e).strip().splitlines()[0]
    return SubmitError(
        f"the cluster at {url} refused the request: {first}. It runs Ray's token auth: set "
        "RAY_AUTH_TOKEN (or write ~/.ray/auth_token) to the token shown by "
        "`ray get-auth-token` on the head node."
    )


def runtime_env(cfg: KeelConfig) -> dict[str, Any]:
    root = project_root()
    return {
        "working_dir": str(root),
        "excludes": EXCLUDES,
        "py_modules": [str(Path(keel.__file__).parent)],  # the checkout's or the installed one
        "env_vars": runtime.cluster_env(cfg),
    }


def submit(client, entrypoint: str, **options: Any) -> str:
    """Submit, waiting out a fresh cluster's job agent (it takes a while to come up)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, **options)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def follow(client, job_id: str, out=sys.stdout) -> None:
    """Stream a job's log to `out` until the job ends."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    asyncio.run(tail())


def wait(client, job_id: str, poll_s: float = 2.0) -> str:
    """Wait for a job to end; its final status."""
    last = None
    while True:
        status = client.get_job_status(job_id)
        if status != last:
            log.info("job %s: %s", job_id, status.value)
            last = status
        if status.is_terminal():
            return status.value
        time.sleep(poll_s)


def last_lines(text: str, n: int) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-n:])

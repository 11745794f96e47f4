"""Where a model version came from: config hash, data fingerprint, code and package versions.

Stored with the weights (bundle.File.lineage) so a version can be reproduced, or its difference
from another version explained, without the run that made it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from typing import Any

PACKAGES = ("keel", "ray", "torch", "numpy", "pandas", "pyarrow", "hydra-core", "omegaconf")


def lineage(
    cfg_dict: dict,
    *,
    data_fingerprint: str,
    seed: int,
    parent: int | None,
    rows: int | dict[str, int] | None = None,
) -> dict[str, Any]:
    """The lineage record of one training run (cfg_dict: the resolved config as plain data)."""
    return {
        "config_hash": config_hash(cfg_dict),
        "data_fingerprint": data_fingerprint,
        "rows": rows,
        "seed": seed,
        "parent": parent,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "hostname": socket.gethostname(),
        "created_at": now(),
    }


def now() -> str:
    """UTC, to the second, ISO 8601 with a Z: sortable and unambiguous across machines."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def config_hash(cfg_dict: dict) -> str:
    """sha256 of the canonical JSON, so key order and formatting never change the hash."""
    text = json.dumps(cfg_dict, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    # Structured configs resolve enums to Enum members, and pandas gives list cells as numpy
    # arrays: hash their values, not their (truncated) reprs.
    if isinstance(value, Enum):
        return value.value
    return value.tolist() if hasattr(value, "tolist") else str(value)


def git_commit() -> str | None:
    """HEAD of the project checkout; None outside git (an installed wheel, a bare worker)."""
    from keel.config import project_root

    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

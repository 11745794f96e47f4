"""Faults: a process killed mid-way leaves nothing half-done behind it.

`keel retrain` is killed with SIGKILL while it trains the challenger (its Ray Train run on the
shared session): the registry shows no new version and the same stages, and the next
`keel retrain` runs and promotes as if the first had never started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ray_nodes import BIN

from keel.config import load
from keel.monitoring.monitor import run as monitor
from keel.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_killed_retrain_leaves_no_partial_version_and_the_next_one_runs(
    retrainable, log_traffic, ray_session
):
    overrides = retrainable
    cfg = load(overrides)
    log_traffic(cfg, seed=51, rows=3000, concept=1.0)
    assert monitor(cfg).verdict["retrain"] is True
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
        time.sleep(3)  # inside the Ray Train run
    finally:
        os.killpg(retrain.pid, signal.SIGKILL)
        retrain.wait(timeout=30)
    assert retrain.returncode == -signal.SIGKILL
    assert registry.versions("churn") == versions  # nothing half-registered is visible
    assert registry.stages("churn") == stages

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    after = registry.versions("churn")
    assert [v.version for v in after] == [*(v.version for v in versions), versions[-1].version + 1]
    assert registry.stages("churn")["production"] == after[-1].version  # promoted


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in list(lines)):
        assert proc.poll() is None, "".join(lines)[-4000:]
        assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(lines)[-4000:]
        time.sleep(0.2)

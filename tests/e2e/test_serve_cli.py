"""`keel serve` through the real command: it serves until interrupted, then flushes its log."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from keel import prediction_log
from keel.config import load
from keel.data import synthetic
from keel.data.batch import json_rows

KEEL = str(Path(sys.executable).parent / "keel")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_keel_serve_answers_then_stops_cleanly_on_ctrl_c(
    trained_root, ray_session, serve_port, tmp_path
):
    shutil.copytree(Path(trained_root) / "registry", tmp_path / "registry")
    proc = subprocess.Popen(
        [
            KEEL,
            "serve",
            f"ray.address={ray_session}",
            f"paths.root={tmp_path}",
            f"serve.port={serve_port}",
            "ray.progress_bars=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{serve_port}"
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        _wait_until_serving(proc, lines)
        cfg = load(["dataset.source.rows=5", "dataset.source.invalid_fraction=0"])
        rows = json_rows(synthetic.generate(cfg.dataset), drop=("churned",))
        r = requests.post(f"{base}/v1/models/churn:predict", json={"instances": rows}, timeout=30)
        assert r.status_code == 200, r.text
        ids = {p["request_id"] for p in r.json()["predictions"]}
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)  # the reader thread drains the last lines
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert f"POST {base}/v1/models/churn:predict" in out
    assert "stopped: logs flushed" in out
    logged = prediction_log.read(prediction_log.predictions_dir(str(tmp_path / "logs"), "churn"))
    assert set(logged.column("request_id").to_pylist()) == ids


def _wait_until_serving(proc: subprocess.Popen, lines: list[str], timeout: float = 300) -> None:
    """Until the job prints its summary: deployed, ready, waiting for Ctrl-C."""
    deadline = time.monotonic() + timeout
    while not any("Ctrl-C to stop" in line for line in lines):
        assert proc.poll() is None, "keel serve exited early:\n" + "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "keel serve did not start:\n" + "".join(lines)[-3000:]
        time.sleep(0.5)

"""`keel deploy` writes a Serve config file; `serve run` of that file serves the API.

`serve run` starts its own local Ray (no RAY_ADDRESS), as an operator's would, so the file
alone must be enough: nothing is inherited from the test session's cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from keel.data import synthetic
from keel.runtime import own_ray_env

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
PORT = 8011
BASE = f"http://127.0.0.1:{PORT}"
# Started from a script in the background, pytest ignores SIGINT and so would its children,
# and `serve run` would never see Ctrl-C: restore the default handler, then exec the command.
WITH_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def clean_env() -> dict[str, str]:
    """This shell's env less what the test session's Ray set (its address, HAProxy ports and
    the project root it forwards), as on an operator's machine."""
    env = own_ray_env(os.environ)
    env.pop("KEEL_PROJECT_ROOT", None)
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled"}


def churn_instance(make_cfg) -> dict:
    """A valid row of the churn data as JSON would carry it (ISO timestamps, null for NaN)."""
    cfg = make_cfg(
        "experiment=churn", "dataset.source.rows=20", "dataset.source.invalid_fraction=0"
    )
    rows = synthetic.generate(cfg.dataset).to_pandas().drop(columns=[cfg.dataset.target])
    return json.loads(rows.head(1).to_json(orient="records", date_format="iso"))[0]


def wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve run exited {proc.returncode}:\n{log.read_text()}"
        try:
            if requests.get(f"{BASE}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.fail(f"{BASE}/readyz not 200 after {timeout_s:.0f} s:\n{log.read_text()[-5000:]}")


@pytest.mark.slow
def test_serve_run_of_the_deploy_file_serves_predictions(trained_root, tmp_path, make_cfg):
    root = tmp_path / "root"
    shutil.copytree(Path(trained_root) / "registry", root / "registry")
    env = clean_env()
    proc = subprocess.run(
        [str(BIN / "keel"), "deploy", f"paths.root={root}", f"serve.port={PORT}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = root / "deploy" / "serve.yaml"
    summary = "".join(proc.stdout.split())  # the table folds long rows at any character
    assert f"file{config}" in summary and "churnproduction(v1)" in summary
    assert f"servedeploy{config}--addresshttp://HEAD:8265" in summary

    log = tmp_path / "serve-run.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [*WITH_SIGINT, str(BIN / "serve"), "run", str(config)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the finally can end all of it
        )
    try:
        wait_ready(server, log)
        r = requests.post(
            f"{BASE}/v1/models/churn:predict",
            json={"instances": [churn_instance(make_cfg)]},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == 1 and len(body["predictions"]) == 1
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=120) == 0, log.read_text()[-5000:]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    # the ingress logged the prediction where the file's config says
    assert list((root / "logs" / "predictions" / "model=churn").rglob("*.parquet"))

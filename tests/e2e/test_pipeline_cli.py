"""`keel pipeline` (what `make demo` runs): the whole loop through the real command.

It starts its own embedded Ray, trains both demo models, serves them over HTTP, sends normal
and drifted traffic with feedback, monitors, retrains and checks the switch. The test asserts
on what the loop left behind: the verdicts, the reports, the decision and the registry.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from keel import prediction_log as plog
from keel import storage
from keel.registry import Registry

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# a smaller churn dataset keeps the suite short; the loop and its checks are the demo's own
SMALLER = ("dataset.source.rows=10000", "train.epochs=6")


def verdicts(root: Path, model: str) -> list[dict]:
    runs = sorted((root / "reports" / model / "monitor").iterdir())
    return [storage.read_json(str(run / "verdict.json")) for run in runs]


@pytest.mark.slow
@pytest.mark.alone
def test_pipeline_runs_the_whole_loop(tmp_path):
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KEEL_PROJECT_ROOT")}
    done = subprocess.run(
        [BIN / "keel", "pipeline", f"paths.root={root}", "serve.port=8031", *SMALLER],
        cwd=ROOT,
        env={**env, "WANDB_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "the whole loop in" in done.stdout
    # Serve shut down at exit, quietly: nothing holds its port, no Ray task failure printed
    listening = {c.laddr.port for c in psutil.net_connections("inet") if c.status == "LISTEN"}
    assert 8031 not in listening
    assert "graceful_shutdown" not in out and "Traceback" not in out, out[-3000:]

    normal, drifted, after = verdicts(root, "churn")
    assert normal["status"] == "pass" and normal["version"] == 1
    assert drifted["status"] == "fail" and drifted["version"] == 1
    drift = drifted["checks"]["drift"]
    assert drift["drifted_columns"] == ["age", "contract", "monthly_charges"]
    assert drifted["checks"]["quality"]["status"] == "fail"  # the concept shift
    # which quality estimated without labels cannot see: the summary says why they disagree
    assert "concept shift" in drifted["checks"]["estimate"]["disagreement"]
    assert "quality without labels" in done.stdout and "realized" in done.stdout
    # the explanations lean on drifted inputs more: only they gain share (age 7% -> 16% here)
    shares = drifted["checks"]["attribution"]["shares"]
    gained = {c for c, (before, now) in shares.items() if now - before > 0.015}
    assert gained and gained <= set(drift["drifted_columns"]), shares
    assert "explanations moved" in done.stdout
    why = r"explain one churn request.*?log-odds\s+of\s+churned\s+=\s+1:"  # however it wraps
    assert re.search(why, done.stdout, re.S), done.stdout
    assert drifted["retrain"] is True
    assert after["status"] == "pass" and after["version"] == 2
    assert after["checks"]["quality"]["metrics"]["roc_auc"] >= 0.70
    (listings,) = verdicts(root, "listings")
    assert listings["status"] == "pass"
    for verdict in (normal, drifted, after, listings):
        assert Path(verdict["files"]["html"]).stat().st_size > 10_000
        assert verdict["checks"]["slo"]["status"] == "pass"
        assert verdict["checks"]["quality"]["feedback"]["matched"] == verdict["rows"]

    registry = Registry(str(root / "registry"))
    for name in ("churn", "listings"):  # stages 1-5 ran for both demo models
        assert next(root.glob(f"reports/{name}/validation/*/report.json"))
        assert f"train {name}" in done.stdout
    stages = registry.stages("churn")
    assert stages.production == 2
    assert stages.history[-1].reason.startswith("retrain:")
    assert registry.stages("listings").production == 1
    (decision_dir,) = (root / "reports" / "churn" / "retrain").iterdir()
    decision = storage.read_json(str(decision_dir / "decision.json"))
    assert decision["promoted"] is True
    assert decision["challenger"]["holdout"]["roc_auc"] > decision["champion"]["holdout"]["roc_auc"]
    # the new version answered the traffic after the switch
    logged = plog.read(plog.predictions_dir(str(root / "logs"), "churn"))
    versions = set(logged["version"].to_pylist())
    assert versions == {1, 2}

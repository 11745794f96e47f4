"""The real `keel` command in a subprocess, joined to the test session's Ray cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keel.data import synthetic
from keel.runtime import free_port

KEEL = str(Path(sys.executable).parent / "keel")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keel(ray_session, tmp_path):
    def run(*args: str, exe: tuple[str, ...] = (KEEL,)) -> subprocess.CompletedProcess:
        common = [f"ray.address={ray_session}", f"paths.root={tmp_path}", "ray.progress_bars=false"]
        return subprocess.run(
            [*exe, *args, *common], capture_output=True, text=True, cwd=ROOT, timeout=600
        )

    return run


def test_validate_reports_exactly_the_planted_rows(keel, tmp_path, make_cfg):
    proc = keel("validate", "experiment=listings", "dataset.source.rows=4000")
    assert proc.returncode == 0, proc.stderr
    assert "validated dataset 'listings'" in proc.stdout
    report = json.loads(
        next(tmp_path.glob("reports/listings/validation/*/report.json")).read_text()
    )
    planted = synthetic.planted(make_cfg("experiment=listings", "dataset.source.rows=4000").dataset)
    assert {f"{r['column']}:{r['rule']}": r["rows"] for r in report["rules"]} == planted
    for label, count in planted.items():
        assert f"{label}" in proc.stdout and f"(planted {count:,})" in proc.stdout


def test_the_job_file_is_the_same_entry_point(keel, tmp_path):
    proc = keel("dataset.source.rows=1000", exe=(sys.executable, "jobs/validate.py"))
    assert proc.returncode == 0, proc.stderr
    assert "validated dataset 'churn'" in proc.stdout


def test_policy_failure_exits_1_with_the_policy_key(keel):
    proc = keel("validate", "dataset.source.rows=2000", "dataset.source.invalid_fraction=0.3")
    assert proc.returncode == 1
    assert "dataset.validation.max_invalid_fraction=0.05" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_bad_file_exits_1_naming_it(keel, tmp_path):
    proc = keel("validate", "dataset.source.format=csv", f"dataset.source.path={tmp_path}/x.csv")
    assert proc.returncode == 1
    assert f"{tmp_path}/x.csv: no such file or directory" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_config_tree_of_ones_own_outside_the_checkout(ray_session, tmp_path):
    """A team keeps its configs in its own repository: KEEL_CONFIG_DIR (or --config-dir) names
    the tree, and keel runs from any directory. A dataset that only the copy holds proves the
    copy is what composed."""
    mine = tmp_path / "team" / "conf"
    shutil.copytree(ROOT / "conf", mine)
    churn = (mine / "dataset" / "churn.yaml").read_text()
    (mine / "dataset" / "ours.yaml").write_text(churn.replace("name: churn", "name: ours", 1))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KEEL_PROJECT_ROOT"}
    common = [f"ray.address={ray_session}", f"paths.root={tmp_path / 'out'}"]
    validate = ["validate", "dataset=ours", "dataset.source.rows=1000"]

    by_env = subprocess.run(
        [KEEL, *validate, *common],
        env={**env, "KEEL_CONFIG_DIR": str(mine)},
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    assert "validated dataset 'ours'" in by_env.stdout
    assert next((tmp_path / "out").glob("reports/ours/validation/*/report.json"))

    by_flag = subprocess.run(
        [KEEL, "--config-dir", str(mine), "config", "dataset=ours", *common],
        env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert by_flag.returncode == 0, by_flag.stderr
    assert "name: ours" in by_flag.stdout


@pytest.mark.parametrize("job", ["monitor", "retrain"])
def test_an_object_store_that_is_down_is_one_error_naming_it(job, ray_session, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there: the store is down
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "keel-test",
        "AWS_SECRET_ACCESS_KEY": "keel-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{endpoint}",
    }
    args = [job, f"ray.address={ray_session}", "paths.root=s3://keel-down/out"]
    proc = subprocess.run(
        [KEEL, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "error:" in proc.stdout and "paths.root=s3://keel-down/out" in proc.stdout, out
    assert "keel-down" in proc.stdout.split("(an I/O error")[0] and endpoint in proc.stdout, out

"""The notebooks: stored clean, run top to bottom by a real Jupyter kernel (the `keel` kernel
that `make kernel` installs) on small data, and JupyterLab as `make lab` starts it.

The three notebooks run in order on one paths.root (02 trains what 03 serves), each kernel
joining the shared Ray session. The assertions read what the cells printed and displayed.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from keel.config import load
from keel.data import synthetic
from keel.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs_and_leave_the_work_to_the_package():
    assert [p.name for p in NOTEBOOKS] == [
        "01_data.ipynb",
        "02_train_and_sweep.ipynb",
        "03_serve_and_monitor.ipynb",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "keel", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0].metadata.get("tags") == ["parameters"], f"{path.name}: no parameter cell"
        assert "KEEL_NOTEBOOK_SMALL" in code[0].source
        for cell in code:
            where = f"{path.name}: {cell.source.splitlines()[0]!r}"
            assert cell.outputs == [] and cell.execution_count is None, f"{where} has outputs"
            assert "execution" not in cell.metadata, f"{where} keeps execution timings"
            # the package does the work: no cell defines a function or a class of its own
            assert not re.search(r"^\s*(async\s+)?(def|class)\s", cell.source, re.M), where


@pytest.fixture(scope="module")
def executed(ray_session, serve_port, tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """Each notebook, executed in order by the keel kernel on small data."""
    installed = subprocess.run(["make", "-s", "kernel"], cwd=ROOT, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    root = tmp_path_factory.mktemp("notebooks")
    # The notebooks run beside other tests on two shared cores, so a p99 over 100 requests
    # measures the neighbours (131 ms once in CI); the latency SLO is asserted where nothing
    # runs beside it (test_pipeline_cli, the alone phase). Drift and quality judge as written.
    overrides = (
        f"ray.address={ray_session} paths.root={root} serve.port={serve_port} "
        "ray.progress_bars=false tracking=disabled slo.latency_p99_ms=2000"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "KEEL_NOTEBOOK_SMALL": "1",
        "KEEL_NOTEBOOK_OVERRIDES": overrides,
    }
    done = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="keel",
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute(env=env)
        finally:
            nbformat.write(nb, root / path.name)  # the executed copy, for a failure's reader
        done[path.stem] = nb
    return done


def printed(nb, tag: str) -> str:
    """What the cell tagged `tag` wrote to stdout."""
    (cell,) = (c for c in nb.cells if tag in c.metadata.get("tags", []))
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def shown(nb, tag: str, mime: str = "text/plain") -> str:
    """What the cell tagged `tag` displayed as `mime`."""
    (cell,) = (c for c in nb.cells if tag in c.metadata.get("tags", []))
    return "".join(o.data.get(mime, "") for o in cell.outputs if "data" in o)


def displayed(nb, mime: str) -> list[str]:
    """Everything the notebook displayed as `mime`, in order."""
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    return [o.data[mime] for o in outputs if mime in o.get("data", {})]


def figures(nb) -> int:
    return len(displayed(nb, "application/vnd.plotly.v1+json"))


@pytest.mark.slow
def test_the_data_notebook_validates_and_featurizes(executed):
    nb = executed["01_data"]
    planted = synthetic.planted(load(["dataset.source.rows=3000"]).dataset)
    found = re.search(r"validation: (\d+) invalid rows of 3000", printed(nb, "validation"))
    invalid = int(found[1])
    assert invalid == sum(planted.values()) > 0  # every planted bad row caught, no other row
    report = shown(nb, "validation")
    for rule, rows in planted.items():
        assert re.search(rf"{re.escape(rule)}\s+{rows} rows \(planted {rows}\)", report), rule
    features = re.search(r"(\d+) input columns -> (\d+) features", printed(nb, "features"))
    assert int(features[1]) == 10 and int(features[2]) > 10  # one-hot and date parts widen
    assert figures(nb) == 2


@pytest.mark.slow
def test_the_training_notebook_trains_sweeps_and_registers(executed):
    nb = executed["02_train_and_sweep"]
    auc = float(re.search(r"metric: test roc_auc ([\d.]+)", printed(nb, "train"))[1])
    assert auc >= 0.70  # the churn floor: v1 becomes production
    assert "sweep: 2 trials" in printed(nb, "sweep")
    assert "train.lr" in shown(nb, "sweep") and "val_loss" in shown(nb, "sweep")
    assert "registry: production v1" in printed(nb, "registry")
    (card,) = displayed(nb, "text/markdown")
    assert "churn v1" in card and "roc_auc" in card
    assert figures(nb) == 4


@pytest.mark.slow
def test_the_serving_notebook_catches_drift_and_retrains(executed):
    nb = executed["03_serve_and_monitor"]
    assert "churn v1" in printed(nb, "serve")
    # one request explained: the log-odds of churn from the base and its largest attributions
    assert re.match(r"log-odds of churned = 1: \S+ = base \S+ \+ \w+ [+-]", printed(nb, "explain"))
    (cell,) = (c for c in nb.cells if "explain" in c.metadata.get("tags", []))
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in cell.outputs)
    assert "2000 rows served, monitor pass" in printed(nb, "normal"), shown(nb, "normal")
    assert "2000 rows served, monitor fail" in printed(nb, "drifted"), shown(nb, "drifted")
    assert re.search(r"drift\s+fail: .*age, contract, monthly_charges", shown(nb, "drifted"))
    (report,) = (h for h in displayed(nb, "text/html") if "srcdoc=" in h)
    page = html.unescape(report)  # the saved drift report, whole, in the frame
    assert re.search(r"[3-9] of \d+ columns drifted .*: .*monthly_charges", page)
    assert page.count("<svg") >= 10  # a histogram per compared column and the prediction
    # quality estimated without labels stays high under the concept shift, and says why
    assert "concept shift" in printed(nb, "estimate"), printed(nb, "estimate")
    (cell,) = (c for c in nb.cells if "estimate" in c.metadata.get("tags", []))
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in cell.outputs)
    promoted = re.search(r"promoted=True; production v1 -> v(\d+)", printed(nb, "retrain"))
    assert promoted, printed(nb, "retrain")
    assert f"the app now answers with churn v{promoted[1]}" in printed(nb, "switch")


@pytest.mark.slow
def test_make_lab_starts_jupyterlab_on_localhost_with_the_keel_kernel(tmp_path):
    lab = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_PORT={free_port()}"],
        cwd=ROOT,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: make and jupyter stop together
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(lab.stdout), daemon=True).start()
    try:
        url = _printed_url(lines, lab)
        base, token = re.match(r"(http://127\.0\.0\.1:\d+)/lab\?token=(\w+)", url).groups()
        assert requests.get(url, timeout=30).status_code == 200
        assert requests.get(f"{base}/api/kernelspecs", timeout=30).status_code == 403  # no token
        specs = requests.get(
            f"{base}/api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=30
        ).json()["kernelspecs"]
        keel = specs["keel"]["spec"]
        assert keel["display_name"] == "keel (.venv)"
        assert Path(keel["argv"][0]).resolve() == Path(sys.executable).resolve()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


def _printed_url(lines: list[str], lab: subprocess.Popen, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in list(lines):
            if found := re.search(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", line):
                return found[0]
        assert lab.poll() is None, "".join(lines)
        time.sleep(0.5)
    raise AssertionError("make lab printed no URL:\n" + "".join(lines))

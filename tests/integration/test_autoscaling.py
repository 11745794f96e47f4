"""Autoscaling shown (issue 21, fault 7): a step load on a served app makes Serve add replicas
within the configured bounds, and remove them once the load stops, with no failed request
while replicas start and stop. The figures (time to scale up and down, p99 per window) are
printed; bench=autoscale draws them for the README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks import autoscale
from keel.config import load
from keel.data import synthetic
from keel.data.batch import json_rows
from keel.serving import service

BOUNDS = {"min_replicas": 1, "max_replicas": 3}
# seconds, not Serve's defaults (30 s up, 600 s down), so that the test takes one minute
FAST = {
    "target_ongoing_requests": 2,
    "upscale_delay_s": 1,
    "downscale_delay_s": 3,
    "look_back_period_s": 2,
    "metrics_interval_s": 0.5,
}
MODEL = "churn"


def test_a_step_load_adds_replicas_within_bounds_and_they_go_once_it_stops(
    trained_root, serve_port, tmp_path
):
    root = tmp_path / "out"
    shutil.copytree(Path(trained_root) / "registry", root / "registry")
    cfg = load(
        [
            f"experiment={MODEL}",
            f"paths.root={root}",
            f"serve.port={serve_port}",
            "ray.progress_bars=false",
            "dataset.source.rows=64",
            "dataset.source.invalid_fraction=0",
        ]
    )
    cfg = autoscale.app_config(cfg, MODEL, 1, {**BOUNDS, **FAST})
    rows = json_rows(synthetic.generate(cfg.dataset), drop=(cfg.dataset.target,))
    payloads = [json.dumps({"instances": rows[i : i + 8]}).encode() for i in range(0, 64, 8)]
    base = service.start(cfg)
    try:
        timeline = autoscale.step(
            base,
            MODEL,
            payloads,
            cfg.serve.app_name,
            operation="predict",
            concurrency=16,
            load_s=45,
            idle_before_s=2,
            idle_after_s=40,
            until_scaled=True,  # then the load stops: what remains is scaling down
        )
    finally:
        service.stop(cfg)

    figures = autoscale.describe(timeline, 2.5, cfg.slo.latency_p99_ms)
    print(figures)
    print("replicas:", timeline.replicas)
    assert timeline.at(0.0) == BOUNDS["min_replicas"]
    assert timeline.scaled_up_s() is not None and timeline.scaled_up_s() <= timeline.load_s
    assert BOUNDS["min_replicas"] < timeline.most() <= BOUNDS["max_replicas"]
    assert timeline.scaled_down_s() is not None  # and stayed down to the end
    assert timeline.replicas[-1][1] == BOUNDS["min_replicas"]
    assert timeline.failed == 0
    assert len(timeline.answers) > 500

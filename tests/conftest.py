"""Shared fixtures: one Ray session for the whole run (starting Ray costs ~15 s here)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def make_cfg(tmp_path):
    """Compose a config whose outputs go under this test's tmp_path."""
    from keel.config import load

    def make(*overrides: str):
        return load([f"paths.root={tmp_path / 'out'}", "ray.progress_bars=false", *overrides])

    return make


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """Start the embedded local Ray once; yields its address for subprocesses to join."""
    import ray

    from keel import runtime
    from keel.config import load

    cfg = load(["ray.num_cpus=2", "ray.progress_bars=false"])
    runtime.ensure(cfg)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# Small but real: both demo models trained with Ray Train into one registry, shared by the
# serving, batch-inference and monitoring tests. Churn gets a second version for promotion.
TINY = ("dataset.source.rows=3000", "train.epochs=2", "train.cpus_per_worker=0.5")


@pytest.fixture(scope="session")
def trained_root(ray_session, tmp_path_factory):
    """paths.root of a registry holding churn v1 (production), churn v2 (candidate) and
    listings v1 (production)."""
    from keel.config import load
    from keel.training.run import train

    root = tmp_path_factory.mktemp("trained") / "out"
    common = (f"paths.root={root}", "ray.progress_bars=false", *TINY)
    floors = {"churn": "slo.quality_floor.roc_auc=0", "listings": "slo.quality_floor.r2=-1e9"}
    for name, seed in (("churn", 0), ("churn", 1), ("listings", 0)):
        train(load([*common, f"experiment={name}", floors[name], f"train.seed={seed}"]))
    return str(root)

"""cluster.yaml passes Ray's cluster-launcher schema and `ray up`'s offline checks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here may reach AWS (or anything else); local mount paths resolve from ROOT."""

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster.yaml check opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.chdir(ROOT)


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def ray_up_checks(config: dict) -> dict:
    """What `ray up` checks before it calls AWS: defaults merged, then validated."""
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def test_schema_and_ray_up_checks_accept_it(config):
    jsonschema.validate(config, SCHEMA)
    prepared = ray_up_checks(config)
    for commands in ("head_setup_commands", "worker_setup_commands"):
        assert any(
            "-c ~/keel/constraints.txt -e ~/keel" in command for command in prepared[commands]
        )


def test_head_trains_nothing_and_gpu_workers_exist(config):
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] >= 1 for t in gpu)
    assert all(t["node_config"]["InstanceType"].startswith("g") for t in gpu)
    assert config["max_workers"] >= sum(t.get("min_workers", 0) for t in types.values())
    assert not any("--dashboard-host" in c for c in config["head_start_ray_commands"])


def test_image_matches_installed_ray_and_mounts_exist(config):
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    mounts = config["file_mounts"]
    project = [local for local in mounts.values() if not local.startswith("~")]
    assert project and all((ROOT / local).exists() for local in project)
    for needed in ("conf", "jobs", "platform", "pyproject.toml", "constraints.txt"):
        assert f"~/keel/{needed}" in mounts


def test_every_node_runs_ray_token_auth_with_the_mounted_token(config):
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        (start,) = [c for c in commands if "ray start" in c]
        assert "RAY_AUTH_MODE=token" in start


@pytest.mark.parametrize(
    ("breaks", "error"),
    [
        (lambda c: c.update(max_worker=c.pop("max_workers")), "'max_worker' was unexpected"),
        (lambda c: c.update(max_workers="many"), "'many' is not of type 'integer'"),
        (lambda c: c["available_node_types"]["head"].pop("resources"), "'resources' is a requ"),
        (
            lambda c: c["available_node_types"]["cpu_worker"].update(min_workers=11),
            "smaller than the sum of `min_workers`",
        ),
    ],
    ids=["misspelled-key", "max-workers-not-int", "head-without-resources", "min-over-max"],
)
def test_ray_up_checks_reject_a_broken_config(config, breaks, error):
    breaks(config)
    with pytest.raises((jsonschema.ValidationError, ValueError), match=error):
        ray_up_checks(config)

"""`keel deploy`'s Serve config file, built against a registry made here (no Ray started)."""

from __future__ import annotations

import json

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from keel import storage
from keel.config import from_dict
from keel.errors import ConfigError
from keel.registry import Registry, RegistryError
from keel.serving import deploy
from keel.serving.graph import deployments, model_options

PROFILE = {"ms_per_batch": {"1": 0.4, "32": 1.5, "256": 8.0}}


@pytest.fixture
def registered(make_cfg):
    """A registry with churn v1 (production) and v2, and listings v1 (production): the
    latency profile is the one file the deploy file needs from a version."""
    registry = Registry(make_cfg().paths.registry)
    for model, versions in (("churn", 2), ("listings", 1)):
        for _ in range(versions):
            registry.register(model, {"latency.json": json.dumps(PROFILE)})
        registry.promote(model, 1)
    return registry


def written(cfg) -> tuple[str, dict]:
    out = deploy.write(cfg)
    with open(out.path) as f:
        text = f.read()
    return text, yaml.safe_load(text)


def test_the_file_is_a_valid_serve_config_of_keels_app(registered, make_cfg):
    cfg = make_cfg("serve.port=8123", "serve.app_name=shop")
    text, config = written(cfg)

    assert deploy.path(cfg) == f"{cfg.paths.root}/deploy/serve.yaml"
    ServeDeploySchema.model_validate(config)
    assert text.startswith("# ") and "serve deploy serve.yaml --address http://HEAD:8265" in text
    assert config["proxy_location"] == "EveryNode"
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8123}
    (app,) = config["applications"]
    assert (app["name"], app["route_prefix"]) == ("shop", "/")
    assert app["import_path"] == "keel.serving.graph:build_app"
    assert from_dict(app["args"]["config"]).serve == cfg.serve
    assert from_dict(app["args"]["config"]).paths == cfg.paths


def test_a_fused_app_is_one_autoscaled_ingress_sized_like_its_slowest_model(registered, make_cfg):
    cfg = make_cfg("serve.fused=true")
    _, config = written(cfg)
    (ingress,) = config["applications"][0]["deployments"]
    targets = [
        o["autoscaling_config"]["target_ongoing_requests"]
        for o in model_options(cfg, registered).values()
    ]
    assert ingress["name"] == "Ingress" and "num_replicas" not in ingress
    assert ingress["autoscaling_config"]["target_ongoing_requests"] == min(targets)


def test_deployments_carry_the_sizing_serve_would_use(registered, make_cfg):
    cfg = make_cfg("serve.ingress_replicas=2", "serve.fused=false")
    _, config = written(cfg)
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}

    assert set(deployments) == {"model-churn", "model-listings", "Ingress"}
    for model, options in model_options(cfg, registered).items():
        d = deployments[f"model-{model}"]
        assert d["autoscaling_config"] == options["autoscaling_config"]
        assert d["autoscaling_config"]["min_replicas"] >= 1
        assert "num_replicas" not in d
        assert d["ray_actor_options"] == {"num_cpus": cfg.serve.replica_cpus}
    assert deployments["Ingress"]["num_replicas"] == 2
    assert "autoscaling_config" not in deployments["Ingress"]


def test_config_autoscaling_keys_win_in_the_file(registered, make_cfg):
    _, config = written(
        make_cfg(
            "+serve.autoscaling.max_replicas=3",
            "+serve.autoscaling.upscale_delay_s=1",
            "serve.fused=false",
        )
    )
    for d in config["applications"][0]["deployments"][:2]:
        assert d["autoscaling_config"]["max_replicas"] == 3
        assert d["autoscaling_config"]["upscale_delay_s"] == 1


def test_summary_versions_follow_stages_and_pins(registered, make_cfg):
    cfg = make_cfg(
        "serve.models.churn.canary={version: '2', percent: 10}", "serve.models.listings.version=1"
    )
    assert deploy.write(cfg).versions == {
        "churn": "production (v1), canary 10% v2",
        "listings": "v1",
    }


def test_no_secret_in_the_file_only_the_env_var_name(registered, make_cfg, monkeypatch):
    monkeypatch.setenv("KEEL_TOKEN", "s3cr3t-t0ken")
    text, config = written(make_cfg("serve.auth_token_env=KEEL_TOKEN"))

    assert "s3cr3t-t0ken" not in text
    assert "set KEEL_TOKEN" in text  # the header tells the operator what the cluster needs
    ingress = config["applications"][0]["deployments"][-1]
    assert "runtime_env" not in ingress["ray_actor_options"]


def test_env_forwarded_without_this_machines_project_root(registered, make_cfg):
    _, config = written(make_cfg("tracking=disabled", "+ray.env_vars.FEATURE_FLAG=blue"))
    env = config["applications"][0]["runtime_env"]["env_vars"]
    assert env["WANDB_MODE"] == "disabled" and env["FEATURE_FLAG"] == "blue"
    assert "KEEL_PROJECT_ROOT" not in env


def test_replicas_started_from_this_process_get_ray_env_vars(registered, make_cfg, monkeypatch):
    """A notebook's or a test's Ray may have started with another config: the replicas carry
    ray.env_vars themselves, and the ingress the auth token's value."""
    monkeypatch.setenv("KEEL_TOKEN", "s3cr3t-t0ken")
    cfg = make_cfg(
        "+ray.env_vars.FEATURE_FLAG=blue", "serve.fused=false", "serve.auth_token_env=KEEL_TOKEN"
    )
    *models, ingress = deployments(cfg, Registry(cfg.paths.registry))
    # all of ray.env_vars without a Ray; with one (a test process's), what its job lacks:
    # tests/integration/test_log_faults.py checks which
    for model in models:
        assert model["ray_actor_options"]["runtime_env"]["env_vars"]["FEATURE_FLAG"] == "blue"
    env = ingress["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env["FEATURE_FLAG"] == "blue" and env["KEEL_TOKEN"] == "s3cr3t-t0ken"


def test_unknown_model_fails_before_writing(make_cfg):
    cfg = make_cfg()  # serves churn and listings; this registry holds churn only
    registry = Registry(cfg.paths.registry)
    registry.register("churn", {"latency.json": json.dumps(PROFILE)})
    registry.promote("churn", 1)
    with pytest.raises(RegistryError, match=r"listings has no production .* holds: churn\)"):
        deploy.write(cfg)
    assert not storage.exists(deploy.path(cfg))


def test_missing_canary_version_fails_before_writing(registered, make_cfg):
    cfg = make_cfg("serve.models.churn.canary={version: '7', percent: 5}")
    with pytest.raises(RegistryError, match="churn has no version 7"):
        deploy.write(cfg)
    assert not storage.exists(deploy.path(cfg))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("serve.app_name=''", "rejected by `serve deploy`"),
        ("+serve.autoscaling.min_replicas=5", "Ingress: invalid autoscaling_config"),
    ],
)
def test_invalid_serve_config_is_a_config_error(registered, make_cfg, override, message):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=message):
        deploy.write(cfg)
    assert not storage.exists(deploy.path(cfg))


def test_the_replicas_get_typed_settings_that_survive_shipping(make_cfg):
    """The driver builds ServeSettings once; Serve pickles them to every replica."""
    import cloudpickle

    from keel.config.schema import BatchingConfig, ServedModel
    from keel.serving.settings import ServeSettings

    cfg = make_cfg("serve=demo", "serve.batching.max_batch_size=7", "serve.log.flush_rows=11")
    shipped = cloudpickle.loads(cloudpickle.dumps(ServeSettings.from_config(cfg)))
    assert shipped == ServeSettings.from_config(cfg)
    assert set(shipped.runners) == set(cfg.serve.models) == {"churn", "listings"}
    runner = shipped.runners["churn"]
    assert isinstance(runner.served, ServedModel) and isinstance(runner.batching, BatchingConfig)
    assert runner.batching.max_batch_size == 7 and shipped.log.flush_rows == 11
    assert runner.registry == cfg.paths.registry and shipped.logs == cfg.paths.logs
    # the replica reports what the driver computed, and another deploy differs from it
    assert shipped.fingerprint == ServeSettings.from_config(cfg).fingerprint
    secured = make_cfg("serve=demo", "serve.auth_token_env=KEEL_TOKEN")
    assert ServeSettings.from_config(secured).fingerprint != shipped.fingerprint

"""keel.config: composition, overrides, every ConfigError path, and the `keel` CLI contract."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from keel.config import load, project_root, to_dict, to_yaml
from keel.config.check import problems
from keel.config.schema import (
    ColumnType,
    FeatureSpec,
    KeelConfig,
    OnInvalid,
    RuleSpec,
    Scale,
    Task,
    TrackingMode,
    Transform,
)
from keel.errors import ConfigError

KEEL = Path(sys.executable).parent / "keel"


@pytest.fixture(scope="module")
def default() -> KeelConfig:
    return load([])


@functools.cache
def _error(overrides: tuple[str, ...]) -> str:
    with pytest.raises(ConfigError) as info:
        load(list(overrides))
    return str(info.value)


def config_error(overrides: list[str]) -> str:
    """The ConfigError message for these overrides (each composition is done once)."""
    return _error(tuple(overrides))


# ----------------------------------------------------------------------------- composition


def test_default_config_composes_churn(default):
    assert isinstance(default, KeelConfig)
    ds = default.dataset
    assert (ds.name, ds.task, ds.target) == ("churn", Task.binary_classification, "churned")
    assert ds.id_column == "customer_id"
    assert ds.timestamp_column == "signup_ts"
    assert ds.columns["age"].type == ColumnType.int
    assert (ds.columns["age"].min, ds.columns["age"].max) == (18, 100)
    assert ds.columns["total_charges"].nullable is True
    assert ds.columns["contract"].allowed == ["month-to-month", "one-year", "two-year"]
    assert ds.validation.on_invalid == OnInvalid.quarantine
    assert default.features.name == "churn"
    assert default.features.columns["age"].transform == Transform.standardize
    assert default.features.columns["tenure"].scale == Scale.standardize
    assert default.model.hidden_sizes == [64, 32]
    assert default.train.lr == pytest.approx(1e-3)
    assert default.tracking.mode == TrackingMode.offline
    assert default.bench is None


def test_experiment_listings_switches_dataset_and_features():
    cfg = load(["experiment=listings"])
    assert cfg.dataset.name == "listings"
    assert cfg.dataset.task == Task.regression
    assert cfg.dataset.target == "price"
    assert "sqft" in cfg.dataset.columns and "churned" not in cfg.dataset.columns
    assert cfg.features.name == "listings"
    assert cfg.features.columns["reviews_band"].bins == 4
    assert "contract" not in cfg.features.columns


def test_experiment_churn_is_the_default_dataset_with_its_slo_floor(default):
    churn = load(["experiment=churn"])
    assert churn.dataset == default.dataset and churn.features == default.features
    assert churn.slo.quality_floor == {"roc_auc": 0.70} and default.slo.quality_floor == {}


def test_overrides_apply():
    cfg = load(
        [
            "dataset.source.rows=123",
            "train.lr=0.05",
            "model.hidden_sizes=[8,4,2]",
            "features.columns.region.max_categories=2",
            "dataset.validation.on_invalid=fail",
            "model=linear",
            "tracking=disabled",
        ]
    )
    assert cfg.dataset.source.rows == 123
    assert cfg.train.lr == pytest.approx(0.05)
    assert cfg.model.hidden_sizes == [8, 4, 2]  # explicit override beats model=linear's []
    assert cfg.model.name == "linear"
    assert cfg.features.columns["region"].max_categories == 2
    assert cfg.dataset.validation.on_invalid == OnInvalid.fail
    assert cfg.tracking.mode == TrackingMode.disabled


def test_experiment_plus_override():
    cfg = load(["experiment=listings", "dataset.source.rows=77"])
    assert (cfg.dataset.name, cfg.dataset.source.rows) == ("listings", 77)


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # unknown keys, wrong types and bad enum values (Hydra's structured-config check)
        ("dataset.sourc.rows=5", ["dataset.sourc", "'sourc'"]),
        ("features.columns.age.inptu=x", ["features.columns.age.inptu"]),
        ("dataset.source.rows=abc", ["dataset.source.rows", "'abc'"]),
        ("train.epochs=1.5", ["train.epochs"]),
        ("dataset.task=foo", ["dataset.task", "'foo'", "regression"]),
        ("dataset.columns.age.type=integer", ["dataset.columns.age.type", "timestamp"]),
        # ranges declared on the schema fields
        ("dataset.source.rows=-1", ["dataset.source.rows: must be >= 1, got -1"]),
        ("dataset.split.train=1.5", ["dataset.split.train: must be <= 1"]),
        ("train.lr=0", ["train.lr: must be > 0"]),
        ("train.num_workers=-1", ["train.num_workers: must be >= 0, got -1"]),
        ("features.columns.region.max_categories=0", ["features.columns.region.max_categories"]),
        # cross-key rules (check.py)
        ("dataset.split.train=0.5", ["dataset.split: train + val + test must sum to 1, got 0.8"]),
        ("model.hidden_sizes=[0]", ["model.hidden_sizes[0]: must be > 0, got 0"]),
        ("model.hidden_sizes=[64,-1]", ["model.hidden_sizes[1]: must be > 0, got -1"]),
        ("dataset.target=nope", ["dataset.target: 'nope' is not one of dataset.columns"]),
        ("dataset.columns.age.min=200", ["dataset.columns.age: min (200) is greater than max"]),
        ("dataset.source.format=csv", ["dataset.source.path: required for format csv"]),
        ("train.use_gpu=maybe", ["train.use_gpu"]),
        (
            "features.columns.age.input=churned",
            ["features.columns.age.input: 'churned' is the target", "leaks the label"],
        ),
        (
            "features.columns.charges_per_month.inputs=[total_charges,churned]",
            ["features.columns.charges_per_month.inputs: 'churned' is the target"],
        ),
        (
            "features.columns.region_charges.by=churned",
            ["features.columns.region_charges.by: 'churned' is the target"],
        ),
        (
            "features.columns.age.input=nope",
            ["features.columns.age.input: 'nope' is not one of dataset.columns"],
        ),
        # composition
        ("experiment=nope", ["experiment/nope", "listings"]),
        ("+foo=1", ["unknown top-level key", "foo"]),
    ],
)
def test_config_error_names_key_path(override, expected):
    msg = config_error([override])
    assert msg.startswith("invalid config"), msg
    assert "Traceback" not in msg
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"


def test_split_fraction_above_one_also_breaks_the_sum():
    msg = config_error(["dataset.split.train=1.5"])
    assert "2 problem(s)" in msg
    assert "dataset.split: train + val + test must sum to 1, got 1.8" in msg


def test_listings_features_are_checked_against_listings_columns():
    msg = config_error(["experiment=listings", "features.columns.sqft.input=price"])
    assert "features.columns.sqft.input: 'price' is the target" in msg


def test_several_problems_reported_together():
    msg = config_error(
        ["train.lr=0", "model.hidden_sizes=[0]", "train.num_workers=-1", "dataset.source.rows=-1"]
    )
    assert "4 problem(s)" in msg
    for key in ("train.lr", "model.hidden_sizes[0]", "train.num_workers", "dataset.source.rows"):
        assert f"  {key}: " in msg


def _regex(c):
    c.dataset.columns["customer_id"].regex = "(unclosed"


def _boundaries(c):
    c.features.columns["bucketed"] = FeatureSpec(
        transform=Transform.bucketize, input="age", boundaries=[30.0, 20.0]
    )


def _space(c):
    c.sweep.space = {"train.lr": {"normal": [0, 1]}, "train.weight_decay": {"uniform": [1]}}


def _shadow(c):
    c.serve.models["churn"].shadow = "Prod!"


def _between(c):
    c.serve.models["churn"].postprocess.rules = [RuleSpec(name="odd", between=[0.9, 0.1])]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_regex, ["dataset.columns.customer_id.regex: is not a valid regular expression"]),
        (_boundaries, ["features.columns.bucketed.boundaries: must be strictly increasing"]),
        (
            _space,
            [
                "sweep.space.train.lr: must be one of {loguniform, uniform, randint, choice, grid",
                "sweep.space.train.weight_decay: uniform takes [low, high]",
            ],
        ),
        (_shadow, ["serve.models.churn.shadow: 'Prod!' is neither a version number nor a stage"]),
        (
            _between,
            ["serve.models.churn.postprocess.rules[0].between: needs [low, high] with low <= high"],
        ),
    ],
)
def test_a_rule_beside_its_field_names_the_key(default, change, expected):
    """The rules declared on a single field (schema `checked`), for values an override cannot
    easily write."""
    cfg = copy.deepcopy(default)
    change(cfg)
    found = [f"{key}: {msg}" for key, msg in problems(cfg)]
    for fragment in expected:
        assert any(fragment in p for p in found), f"{fragment!r} not in {found}"


def test_an_estimated_floor_names_only_what_the_task_estimates(default):
    cfg = copy.deepcopy(default)  # churn: binary classification
    cfg.slo.estimated_quality_floor = {"roc_auc": 0.7, "mae": 3.0, "r2": 0.5}
    found = dict(problems(cfg))
    assert "slo.estimated_quality_floor.roc_auc" not in found
    assert found["slo.estimated_quality_floor.mae"] == (
        "not estimated for binary_classification (accuracy, precision, recall, f1, roc_auc)"
    )
    assert "slo.estimated_quality_floor.r2" in found  # R^2 is never estimated
    listings = load(["experiment=listings", "+slo.estimated_quality_floor.mae=40"])
    assert listings.slo.estimated_quality_floor == {"mae": 40.0}


# ----------------------------------------------------------------------------- paths and yaml


def test_relative_paths_are_under_the_project_root_wherever_keel_runs(tmp_path, monkeypatch):
    shutil.copytree(project_root() / "conf", tmp_path / "conf")
    monkeypatch.setenv("KEEL_PROJECT_ROOT", str(tmp_path))
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where a notebook's kernel runs
    cfg = load(["paths.root=out", "dataset.source.format=csv", "dataset.source.path=data/x.csv"])
    root = tmp_path.resolve() / "out"
    assert cfg.paths.root == str(root)
    assert cfg.paths.data == str(root / "data")
    assert cfg.paths.reports == str(root / "reports")
    assert cfg.paths.registry == str(root / "registry")
    assert cfg.dataset.source.path == str(tmp_path.resolve() / "data" / "x.csv")
    assert all(Path(p).is_absolute() for p in vars(cfg.paths).values())


def test_uri_paths_are_kept():
    cfg = load(["paths.root=s3://bucket/keel"])
    assert cfg.paths.root == "s3://bucket/keel"
    assert cfg.paths.data == "s3://bucket/keel/data"


def test_to_yaml_round_trips():
    cfg = load(["experiment=listings", "train.lr=0.01", "dataset.source.rows=321"])
    text = to_yaml(cfg)
    plain = OmegaConf.create(text)
    assert plain.dataset.name == "listings"
    assert plain.dataset.task == "regression"
    assert plain.dataset.source.rows == 321
    assert plain.train.lr == pytest.approx(0.01)
    assert plain.features.columns.sqft.transform == "log1p"
    assert plain.paths.root == cfg.paths.root
    back = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KeelConfig), plain))
    assert back == cfg


def test_project_root_holds_conf_and_jobs():
    assert (project_root() / "conf" / "config.yaml").is_file()
    assert (project_root() / "jobs").is_dir()


# ----------------------------------------------------------------------------- CLI

CLI_CASES = {
    "range": ["config", "dataset.source.rows=-1"],
    "misspelt": ["config", "dataset.sourc.rows=5"],
    "listings": ["config", "experiment=listings"],
    "unknown_job": ["nope"],
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """Run every `keel` invocation once, concurrently: name -> (exit code, stdout, stderr)."""
    cwd = tmp_path_factory.mktemp("cli")
    procs = {
        name: subprocess.Popen(
            [str(KEEL), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in CLI_CASES.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = (proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize(
    ("case", "key"), [("range", "dataset.source.rows"), ("misspelt", "dataset.sourc")]
)
def test_cli_config_error_exits_2_without_traceback(cli, case, key):
    code, stdout, stderr = cli[case]
    assert code == 2, stdout + stderr
    assert key in stdout + stderr
    assert "Traceback" not in stdout + stderr


def test_cli_config_prints_listings(cli):
    code, stdout, stderr = cli["listings"]
    assert code == 0, stderr
    assert "name: listings" in stdout
    assert OmegaConf.create(stdout).dataset.target == "price"


def test_cli_unknown_job_exits_2(cli):
    code, stdout, stderr = cli["unknown_job"]
    assert code == 2
    assert "unknown job 'nope'" in stdout + stderr
    assert "Traceback" not in stdout + stderr


def test_categorical_features_refuse_numeric_imputation():
    with pytest.raises(ConfigError, match=r"features.columns.contract.impute: one_hot inputs"):
        load(["features.columns.contract.impute=median"])
    assert load(["features.columns.contract.impute=most_frequent"])


def test_the_demo_serves_both_demo_models_and_an_experiment_without_a_list_serves_its_own():
    assert set(load([]).serve.models) == {"churn", "listings"}  # conf/serve/demo.yaml
    own = load(["experiment=listings", "serve=default"]).serve.models
    assert list(own) == ["listings"]  # serve/default.yaml lists none: the experiment's model
    assert own["listings"].postprocess.rules == []  # the task's default post-processing


def test_an_experiment_may_list_its_served_models_without_the_demo_ones(tmp_path, monkeypatch):
    shutil.copytree(project_root() / "conf", tmp_path / "conf")
    (tmp_path / "conf" / "experiment" / "own.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /dataset: listings\n  - override /features: listings\n"
        "  - override /serve: default\n"
        "serve:\n  models:\n    listings: {version: production, postprocess: {round: 1}}\n"
    )
    monkeypatch.setenv("KEEL_PROJECT_ROOT", str(tmp_path))
    cfg = load(["experiment=own"])
    assert list(cfg.serve.models) == ["listings"]
    assert cfg.serve.models["listings"].postprocess.round == 1


def test_training_length_defaults_to_steps_and_its_bounds_are_checked():
    t = load([]).train
    assert t.epochs is None and t.batch_size is None and t.steps > 0
    assert "train.min_epochs" in _error(("train.min_epochs=50", "train.max_epochs=10"))
    assert "train.batch_size: must be >= 1" in _error(("train.batch_size=0",))


def test_a_new_served_model_on_the_command_line_says_where_to_declare_it():
    with pytest.raises(ConfigError) as e:
        load(["+serve.models.penguins.version=1"])
    assert "penguins" in str(e.value)
    assert "conf/serve/NAME.yaml" in str(e.value) and "experiment=NAME" in str(e.value)


@pytest.mark.parametrize(
    ("key", "choice"),
    [
        ("model.family", "torch"),
        ("model.norm", "layer"),
        ("model.activation", "gelu"),
        ("train.optimizer", "sgd"),
        ("train.precision", "bf16"),
        ("train.placement_strategy", "SPREAD"),
        ("sweep.mode", "max"),
        ("sweep.scheduler", "fifo"),
        ("serve.proxy_location", "HeadOnly"),
        ("monitor.retrain_on", "[slo]"),
    ],
)
def test_a_closed_set_names_its_choices_and_reaches_workers_as_text(key, choice):
    with pytest.raises(
        ConfigError, match=rf"{re.escape(key)}.*expected one of \[.*{choice.strip('[]')}"
    ):
        load([f"{key}=nonsense" if "[" not in choice else f"{key}=[nonsense]"])
    cfg = load([f"{key}={choice}"])
    section, name = key.split(".")
    plain = to_dict(getattr(cfg, section))[name]
    assert plain == (choice if "[" not in choice else [choice.strip("[]")])

"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Hydra type-checks YAML against these dataclasses at compose time (unknown keys, wrong types,
bad enum values). Every field carries its one-line description as metadata, and a rule about
its value alone sits there too, next to the field it guards: a numeric range, a duration, or a
check of its own (a pattern that compiles, increasing edges). `described`, `ranged`, `duration`
and `checked` declare them; `keel describe` prints descriptions, ranges and durations, and
`check.py` enforces every rule, keeping only those that relate several keys itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field
from enum import Enum, StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Field metadata keys, read only through doc_of, range_of, is_duration and rule_of below.
DOC = "doc"  # the one-line description
RANGE = "range"  # (lo, hi, lo_open): the allowed numeric range
DURATION = "duration"  # the value is a duration ('30m', '6h', '1d')
RULE = "rule"  # (rule, each): a check of the value alone, see `checked`

Rule = Callable[[Any], str | None]  # a value -> what is wrong with it, or None


def described(default: Any = None, *, doc: str, factory: Callable[[], Any] | None = None):
    """A field with its one-line description; `factory` makes each instance its own mutable
    default (a list, a dict, a group)."""
    return _field(default, factory, {DOC: doc})


def ranged(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    doc: str,
    lo_open=False,
    factory: Callable[[], Any] | None = None,
):
    """A numeric field with its allowed range, enforced by keel.config.check; the range of a
    list of numbers is each item's."""
    return _field(default, factory, {DOC: doc, RANGE: (lo, hi, lo_open)})


def duration(default: str | None, *, doc: str):
    """A field holding a duration ('30m', '6h', '1d'), checked by keel.config.check."""
    return _field(default, None, {DOC: doc, DURATION: True})


def checked(
    default: Any,
    rule: Rule,
    *,
    doc: str,
    factory: Callable[[], Any] | None = None,
    each: bool = False,
):
    """A field whose value alone must pass `rule`, enforced by keel.config.check: the rule
    says what is wrong after the key's name ('must be strictly increasing'), or returns None.
    With `each`, it judges each item of a list or entry of a map, and names that one."""
    return _field(default, factory, {DOC: doc, RULE: (rule, each)})


def _field(default: Any, factory: Callable[[], Any] | None, metadata: dict[str, Any]):
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def doc_of(f: Field) -> str:
    """A field's one-line description ('' for a field declared without one)."""
    return f.metadata.get(DOC, "")


def range_of(f: Field) -> tuple[float | None, float | None, bool] | None:
    """A field's allowed range as (lo, hi, lo_open), None when it has none."""
    return f.metadata.get(RANGE)


def is_duration(f: Field) -> bool:
    return bool(f.metadata.get(DURATION))


def rule_of(f: Field) -> tuple[Rule, bool] | None:
    """A field's own rule and whether it judges each item or entry, None when it has none."""
    return f.metadata.get(RULE)


class Task(str, Enum):
    binary_classification = "binary_classification"
    multiclass_classification = "multiclass_classification"
    regression = "regression"


class Family(StrEnum):
    """A kind of model: how it is built, fitted, saved, loaded and applied (keel.models.family)."""

    torch = "torch"
    xgboost = "xgboost"  # gradient-boosted trees, XGBoost on Ray Train
    lightgbm = "lightgbm"  # gradient-boosted trees, LightGBM on Ray Train


class Check(StrEnum):
    """The monitor's checks, in verdict order."""

    drift = "drift"
    quality = "quality"
    estimate = "estimate"  # quality estimated without labels (slo.estimated_quality_floor)
    attribution = "attribution"  # columns' share of the explanation (slo.max_attribution_shift)
    slo = "slo"


class Norm(StrEnum):
    """Normalization after each hidden layer."""

    none = "none"
    batch = "batch"
    layer = "layer"


class Activation(StrEnum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"
    silu = "silu"


class Optimizer(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Precision(StrEnum):
    auto = "auto"  # bf16 autocast on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


class PlacementStrategy(StrEnum):
    """How Ray Train places its workers (Ray's placement-group strategies)."""

    PACK = "PACK"
    SPREAD = "SPREAD"  # one worker per node when possible
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class Mode(StrEnum):
    """Whether a sweep's metric is minimized or maximized."""

    min = "min"
    max = "max"


class Scheduler(StrEnum):
    asha = "asha"  # stops poor trials early
    fifo = "fifo"  # every trial runs to the end


class ProxyLocation(StrEnum):
    """Where Serve runs its HTTP proxies."""

    EveryNode = "EveryNode"  # each node with a replica
    HeadOnly = "HeadOnly"
    Disabled = "Disabled"


class ColumnType(str, Enum):
    int = "int"
    float = "float"
    string = "string"
    category = "category"
    bool = "bool"
    timestamp = "timestamp"


class SourceFormat(str, Enum):
    synthetic = "synthetic"
    parquet = "parquet"
    csv = "csv"
    json = "json"


NULL_VALUES = ("", "NA", "N/A", "null", "NaN")  # what files commonly write for "missing"


class OnInvalid(str, Enum):
    quarantine = "quarantine"  # write invalid rows aside, continue with the valid ones
    fail = "fail"  # any invalid row fails the job


# ----------------------------------------------------------------------------- dataset


def _compiles(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as e:
        return f"is not a valid regular expression: {e}"
    return None


@dataclass
class ColumnSpec:
    type: ColumnType = described(
        MISSING, doc="the values' type; a value that cannot be read as one makes its row invalid"
    )
    nullable: bool = described(
        False, doc="whether nulls are allowed; if not, a missing value makes its row invalid"
    )
    min: float | None = described(
        None, doc="the smallest allowed value, inclusive (numeric types); null: no bound"
    )
    max: float | None = described(
        None, doc="the largest allowed value, inclusive (numeric types); null: no bound"
    )
    allowed: list[str] | None = described(
        None, doc="the only values allowed (category and string); null: any value"
    )
    regex: str | None = checked(
        None,
        _compiles,
        doc="a pattern each value must match in full (RE2 syntax, string); null: any value",
    )
    unique: bool = described(
        False, doc="whether each value may appear only once; rows repeating one are invalid"
    )
    description: str = described("", doc="what the column holds; the serving API's docs show it")
    source: str | None = described(
        None, doc="the column's name in the file when it differs from this key (spaces, capitals)"
    )
    format: str | None = described(
        None,
        doc="strptime format of timestamps (%m/%d/%Y %H:%M); null: ISO 8601, zoned ones to UTC",
    )


@dataclass
class DriftConfig:
    covariate: dict[str, float] = described(
        factory=dict,
        doc="column -> shift (std devs for numbers, share of rows moved to the rarest category)",
    )
    concept: float = ranged(
        0.0, 0.0, 1.0, doc="concept shift of the labels: 0 the training relation, 1 fully shifted"
    )


@dataclass
class SourceConfig:
    format: SourceFormat = described(
        SourceFormat.synthetic, doc="a synthetic generator, or files (json: one object per line)"
    )
    path: str | None = described(
        None, doc="file, directory or glob of the data; local or a pyarrow URI (s3://bucket/x)"
    )
    generator: str | None = described(
        None, doc="the synthetic generator; null: the one named like the dataset"
    )
    rows: int = ranged(10_000, 1, doc="rows to generate (synthetic)")
    seed: int = described(0, doc="seed of the generated rows (synthetic): same seed, same rows")
    invalid_fraction: float = ranged(
        0.02, 0.0, 0.5, doc="share of generated rows planted invalid, one broken rule each"
    )
    start: str = described("2024-01-01", doc="first day of the generated timestamps (ISO date)")
    days: int = ranged(365, 1, doc="generated timestamps span this many days from start")
    chunk_rows: int = ranged(50_000, 1, doc="generated rows per Ray task")
    drift: DriftConfig = described(
        factory=DriftConfig, doc="drift knobs of generated rows and of keel simulate's traffic"
    )
    null_values: list[str] = described(
        factory=lambda: list(NULL_VALUES),
        doc="file sources: text meaning missing in any column (CSV cells, JSON strings), any case",
    )


@dataclass
class SplitConfig:
    train: float = ranged(
        0.7,
        0.0,
        1.0,
        lo_open=True,
        doc="share of rows trained on; a hash of its id (or of the row) puts a row in a split",
    )
    val: float = ranged(
        0.15, 0.0, 1.0, doc="share of rows for the validation loss: early stopping, best epoch"
    )
    test: float = ranged(
        0.15, 0.0, 1.0, doc="share of rows held out for the test metrics and slo.quality_floor"
    )
    seed: int = described(0, doc="salt of the split hash: another seed, another split")


@dataclass
class ValidationPolicy:
    max_invalid_fraction: float = ranged(
        0.05,
        0.0,
        1.0,
        doc="share of invalid rows above which the job fails (on_invalid: quarantine)",
    )
    on_invalid: OnInvalid = described(
        OnInvalid.quarantine,
        doc="quarantine: invalid rows set aside, the valid ones used; fail: any invalid row fails",
    )
    examples: int = ranged(5, 0, 100, doc="example rows kept per failing rule in the report")


@dataclass
class DatasetConfig:
    name: str = described(
        MISSING,
        doc="the dataset's name, which its registered model and its default generator share",
    )
    task: Task = described(
        MISSING, doc="what the model predicts: one of two classes, one of several, or a number"
    )
    target: str = described(MISSING, doc="the column the model predicts")
    id_column: str | None = described(
        None, doc="a row's id: hashed for its split, kept in batch predictions; null: none"
    )
    timestamp_column: str | None = described(
        None,
        doc="the column of each row's time (type timestamp), not checked for drift; null: none",
    )
    columns: dict[str, ColumnSpec] = described(
        MISSING, doc="column -> its type and rules; a file must hold exactly these columns"
    )
    slices: list[str] = described(
        factory=list, doc="columns whose values each get their own test metrics"
    )
    source: SourceConfig = described(factory=SourceConfig, doc="where the rows come from")
    split: SplitConfig = described(
        factory=SplitConfig, doc="the shares of rows for training, validation and test"
    )
    validation: ValidationPolicy = described(
        factory=ValidationPolicy,
        doc="how many invalid rows a job accepts, and what becomes of them",
    )


# ----------------------------------------------------------------------------- features


class Transform(str, Enum):
    identity = "identity"
    standardize = "standardize"
    minmax = "minmax"
    log1p = "log1p"
    clip = "clip"
    bucketize = "bucketize"
    one_hot = "one_hot"
    ordinal = "ordinal"
    hashed = "hashed"
    date_parts = "date_parts"
    ratio = "ratio"
    difference = "difference"
    group_stat = "group_stat"


class Impute(str, Enum):
    none = "none"
    mean = "mean"
    median = "median"
    most_frequent = "most_frequent"
    constant = "constant"


class Scale(str, Enum):
    none = "none"
    standardize = "standardize"
    minmax = "minmax"


class GroupStat(str, Enum):
    mean = "mean"
    std = "std"
    min = "min"
    max = "max"
    count = "count"


class DatePart(str, Enum):
    year = "year"
    month = "month"
    day = "day"
    dayofweek = "dayofweek"
    dayofyear = "dayofyear"
    hour = "hour"
    is_weekend = "is_weekend"


def _increasing(edges: list[float]) -> str | None:
    if any(x >= y for x, y in itertools.pairwise(edges)):
        return "must be strictly increasing"
    return None


@dataclass
class FeatureSpec:
    transform: Transform = described(MISSING, doc="how the feature is computed from its input(s)")
    input: str | None = described(
        None, doc="the input column (every transform but ratio and difference)"
    )
    inputs: list[str] | None = described(
        None, doc="[a, b] for ratio (a / b) and difference (a - b)"
    )
    impute: Impute = described(
        Impute.none,
        doc="how missing inputs are filled before the transform; none: they become the fitted mean",
    )
    fill_value: Any = described(None, doc="the value impute: constant fills in")
    scale: Scale = described(Scale.none, doc="scaling applied after a numeric transform")
    lower: float | None = described(None, doc="clip: a fixed lower bound")
    upper: float | None = described(None, doc="clip: a fixed upper bound")
    lower_quantile: float | None = ranged(
        None, 0.0, 1.0, doc="clip: the lower bound fitted as this quantile of the input"
    )
    upper_quantile: float | None = ranged(
        None, 0.0, 1.0, doc="clip: the upper bound fitted as this quantile of the input"
    )
    boundaries: list[float] | None = checked(
        None, _increasing, doc="bucketize: fixed, increasing bucket edges"
    )
    bins: int | None = ranged(
        None, 2, 1000, doc="bucketize: this many buckets, their edges fitted as quantiles"
    )
    categories: list[str] | None = described(
        None, doc="one_hot, ordinal: a fixed vocabulary (ordinal: in code order); null: fitted"
    )
    max_categories: int = ranged(
        20, 1, 10_000, doc="one_hot: the most frequent categories kept; the rest go to __other__"
    )
    min_frequency: int = ranged(
        1, 1, doc="one_hot: categories seen fewer times in training go to __other__"
    )
    buckets: int = ranged(16, 2, 1_000_000, doc="hashed: hash buckets (one column each)")
    parts: list[DatePart] = described(
        factory=lambda: [DatePart.month, DatePart.dayofweek],
        doc="date_parts: the parts of the timestamp, one column each",
    )
    cyclic: bool = described(
        False, doc="date_parts: each cyclic part as sine and cosine (hour 23 beside 0)"
    )
    by: str | None = described(None, doc="group_stat: the column whose values group the input")
    stat: GroupStat = described(GroupStat.mean, doc="group_stat: the statistic of input per group")


@dataclass
class FeaturesConfig:
    name: str = described(MISSING, doc="the feature set's name, by convention its dataset's")
    columns: dict[str, FeatureSpec] = described(
        MISSING, doc="output feature name -> how it is computed from the dataset's columns"
    )
    batch_size: int = ranged(
        65_536, 1, doc="rows per Ray Data batch when fitting, transforming and batch predicting"
    )


# ----------------------------------------------------------------------------- model / train


@dataclass
class TreesConfig:
    """Gradient-boosted trees (model.family xgboost or lightgbm); each key maps to both
    libraries' parameter of that meaning."""

    rounds: int = ranged(500, 1, doc="boosting rounds at most; early stopping may end sooner")
    early_stopping_rounds: int = ranged(
        20, 0, doc="rounds without a better validation loss before boosting stops; 0: never early"
    )
    learning_rate: float = ranged(0.1, 0.0, 1.0, lo_open=True, doc="shrinkage of each tree")
    max_depth: int = ranged(6, 0, doc="deepest a tree grows; 0: no limit (leaves bound it)")
    num_leaves: int = ranged(31, 2, doc="most leaves per tree (LightGBM; XGBoost's max_leaves)")
    min_child_weight: float = ranged(
        1.0, 0.0, doc="least hessian sum (about: rows) a leaf may hold"
    )
    subsample: float = ranged(1.0, 0.0, 1.0, lo_open=True, doc="share of rows each tree sees")
    colsample: float = ranged(
        1.0, 0.0, 1.0, lo_open=True, doc="share of feature columns each tree sees"
    )
    reg_lambda: float = ranged(1.0, 0.0, doc="L2 penalty on leaf weights")
    reg_alpha: float = ranged(0.0, 0.0, doc="L1 penalty on leaf weights")
    # each report is a progress line, a Train report (a checkpoint when one is due) and, in a
    # sweep, one step of ASHA's time axis
    report_every: int = ranged(10, 1, doc="boosting rounds between progress reports")


@dataclass
class ModelConfig:
    name: str = described("mlp", doc="the model config's name, written in the model card")
    family: Family = described(
        Family.torch, doc="the kind of model, which builds, fits, saves and loads it"
    )
    _target_: str | None = described(
        None, doc="a user torch module (dotted name under KEEL_MODEL_MODULES); null: keel's MLP"
    )
    hidden_sizes: list[int] = ranged(
        None,
        0,
        lo_open=True,
        factory=lambda: [64, 32],
        doc="widths of the MLP's hidden layers; []: a linear model",
    )
    dropout: float = ranged(0.1, 0.0, 1.0, doc="dropout probability after each hidden layer")
    norm: Norm = described(Norm.none, doc="normalization after each hidden layer")
    activation: Activation = described(Activation.relu, doc="activation of each hidden layer")
    params: dict[str, Any] = described(
        factory=dict,
        doc="keyword arguments of the _target_ class, beside in_features, out_features",
    )
    trees: TreesConfig = described(
        factory=TreesConfig, doc="gradient-boosted trees (families xgboost, lightgbm)"
    )


def _gpu_setting(setting: str) -> str | None:
    if str(setting).lower() not in ("auto", "true", "false"):
        return f"must be auto, true or false, got '{setting}'"
    return None


@dataclass
class TrainConfig:
    # How long: `steps` optimizer steps (epochs = steps / batches per epoch, kept within
    # [min_epochs, max_epochs]) and early stopping, so small and large data both train enough;
    # a number in `epochs` pins the epochs instead.
    epochs: int | None = ranged(
        None, 1, doc="epochs to train; null: from steps, within [min_epochs, max_epochs]"
    )
    steps: int = ranged(
        3000, 1, doc="optimizer steps to aim at when epochs is null; early stopping may end sooner"
    )
    min_epochs: int = ranged(5, 1, doc="fewest epochs when they come from steps")
    max_epochs: int = ranged(300, 1, doc="most epochs when they come from steps")
    batch_size: int | None = ranged(
        None, 1, doc="rows per optimizer step and worker; null: from the rows (keel.training.plan)"
    )
    optimizer: Optimizer = described(Optimizer.adamw, doc="the torch optimizer")
    lr: float = ranged(1e-3, 0.0, lo_open=True, doc="the optimizer's learning rate")
    weight_decay: float = ranged(0.0, 0.0, doc="the optimizer's weight decay (L2 penalty)")
    # 0 is Ray Train's local mode: no controller or worker processes to start (~10-20 s before
    # the first batch here), so small data trains in seconds; no restarts, no sweep
    num_workers: int = ranged(
        1, 0, doc="Ray Train workers, each on a shard of the rows; 0: train in this process"
    )
    # text, not an Enum of the three: Hydra reads `train.use_gpu=true` (and YAML `true`) as a
    # bool, which OmegaConf refuses for an Enum field
    use_gpu: str = checked(
        "auto",
        _gpu_setting,
        doc="auto: GPUs when the cluster has any; true: wait for one; false: CPU only",
    )
    cpus_per_worker: float = ranged(
        1.0, 0.0, lo_open=True, doc="CPUs Ray reserves for each training worker"
    )
    placement_strategy: PlacementStrategy = described(
        PlacementStrategy.PACK, doc="how Ray Train places its workers on the nodes"
    )
    precision: Precision = described(
        Precision.auto, doc="auto, bf16: bf16 autocast on GPU; fp32: full precision; CPUs use fp32"
    )
    early_stopping_patience: int = ranged(
        5, 0, doc="epochs without a better val_loss before training stops; 0: never early"
    )
    # the last epoch always has a checkpoint, holding the best weights
    checkpoint_seconds: float = ranged(
        10.0, 0.0, doc="seconds at least between resumable checkpoints (0: every epoch)"
    )
    # such a worker loads its shard once into tensors and shuffles it itself each epoch; larger
    # shards stream from Ray Data every epoch
    in_memory_values: int = ranged(
        50_000_000, 0, doc="shards of at most this many feature values train from memory"
    )
    checkpoints_to_keep: int = ranged(2, 1, doc="a run's newest checkpoints kept on disk")
    max_failures: int = ranged(
        1, -1, doc="failures a run recovers from, resuming from its last checkpoint; -1: no limit"
    )
    seed: int = described(
        0, doc="seed of the initial weights, each epoch's shuffle and the drift reference sample"
    )


class Distribution(StrEnum):
    """A sweep.space entry's distribution: Ray Tune's of that name."""

    loguniform = "loguniform"
    uniform = "uniform"
    randint = "randint"
    choice = "choice"  # one of the listed values at random
    grid = "grid"  # every listed value in turn

    @property
    def bounded(self) -> bool:
        """Whether it draws from [low, high] rather than from listed values."""
        return self in (Distribution.loguniform, Distribution.uniform, Distribution.randint)


def _distribution(entry: Any) -> str | None:
    """A sweep.space entry, {distribution: args}."""
    names = {d.value for d in Distribution}
    if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in names:
        return f"must be one of {{{', '.join(Distribution)}: [...]}}"
    name, args = next(iter(entry.items()))
    if Distribution(name).bounded and (not isinstance(args, list) or len(args) != 2):
        return f"{name} takes [low, high]"
    return None


@dataclass
class SweepConfig:
    metric: str = described("val_loss", doc="the reported metric that ranks the trials")
    mode: Mode = described(Mode.min, doc="whether the metric is minimized or maximized")
    samples: int = ranged(8, 1, doc="trials to run (with grid distributions: rounds of the grid)")
    concurrency: int = ranged(2, 1, doc="trials running at once")
    scheduler: Scheduler = described(
        Scheduler.asha, doc="asha stops poor trials early; fifo runs every trial to the end"
    )
    grace_period: int = ranged(
        1, 1, doc="asha: epochs (trees: boosting rounds) a trial runs before it may be stopped"
    )
    reduction_factor: int = ranged(
        2, 2, doc="asha: 1 / reduction_factor of trials go on at each rung"
    )
    cpus_per_trial: float = ranged(
        0.25,
        0.0,
        lo_open=True,
        doc="CPUs reserved for a trial's driver (its Train workers reserve their own)",
    )
    space: dict[str, Any] = checked(
        None,
        _distribution,
        each=True,
        factory=dict,
        doc="config path -> {distribution: args}: loguniform, uniform, randint, choice, grid",
    )


def _space(space: Any) -> str | None:
    """A leaderboard.spaces entry: a sweep space, {config path: {distribution: args}}."""
    if not isinstance(space, dict):
        return "must be a map of config path -> {distribution: [...]}"
    for path, entry in space.items():
        problem = _distribution(entry)
        if problem:
            return f"{path} {problem}"
    return None


@dataclass
class LeaderboardConfig:
    models: list[str] = described(
        factory=lambda: ["mlp", "linear", "xgboost", "lightgbm"],
        doc="model configs (conf/model/NAME.yaml) to try on the same split",
    )
    budget: str = duration(
        "10m", doc="wall time of the whole search; trials not started by then are not run"
    )
    # trials run as a sweep's do: sweep.concurrency at once, sweep.cpus_per_trial each
    trials_per_model: int = ranged(2, 1, doc="trials per model config, drawn from its space")
    spaces: dict[str, Any] = checked(
        None,
        _space,
        each=True,
        factory=dict,
        doc="model config -> its search space, as sweep.space; a model without one runs as written",
    )


# ------------------------------------------------------------------------ SLO / serve / monitor


# What `keel monitor` estimates without labels, per task (keel.training.estimator): the names
# slo.estimated_quality_floor may bound.
ESTIMATED = {
    Task.binary_classification: ("accuracy", "precision", "recall", "f1", "roc_auc"),
    Task.multiclass_classification: ("accuracy", "precision", "recall", "f1", "roc_auc"),
    Task.regression: ("mae", "rmse"),
}


@dataclass
class SloConfig:
    latency_p99_ms: float = ranged(
        100.0,
        0.0,
        lo_open=True,
        doc="p99 latency of answered requests in ms: monitor checks it, autoscaling aims below it",
    )
    throughput_rps: float = ranged(
        50.0,
        0.0,
        lo_open=True,
        doc="requests per second to sustain: it sets the derived minimum of replicas",
    )
    explain_latency_p99_ms: float = ranged(
        1000.0,
        0.0,
        lo_open=True,
        doc="p99 latency budget of explain requests (an explanation costs tens of predictions)",
    )
    max_error_rate: float = ranged(
        0.01, 0.0, 1.0, doc="the largest share of server errors (5xx) the SLO check accepts"
    )
    quality_floor: dict[str, float] = described(
        factory=dict,
        doc="metric -> least test value to promote or pass monitoring (most, for errors like rmse)",
    )
    max_drift_share: float = ranged(
        0.3,
        0.0,
        1.0,
        doc="the largest share of input columns that may drift before the drift check fails",
    )
    max_invalid_fraction: float = ranged(
        0.05,
        0.0,
        1.0,
        doc="the largest share of refused requests (400, 413, 422) the SLO check accepts",
    )
    estimated_quality_floor: dict[str, float] = described(
        factory=dict,
        doc="metric -> least quality estimated without labels (most, for mae and rmse) to pass "
        "monitoring",
    )
    max_attribution_shift: float = ranged(
        0.1,
        0.0,
        1.0,
        doc="how far a column's share of the explanation may move from training's before the "
        "attribution check fails",
    )


class RuleAction(str, Enum):
    flag = "flag"  # name the rule in the output's `rules` (e.g. route to human review)
    set = "set"  # replace the output value with `value` (e.g. a price floor)


def _low_high(between: list[float]) -> str | None:
    if len(between) != 2 or between[0] > between[1]:
        return f"needs [low, high] with low <= high, got {between}"
    return None


@dataclass
class RuleSpec:
    """A declared business rule on the raw prediction; exactly one condition is given."""

    name: str = described(
        MISSING, doc="the rule's name, listed in the output's rules when it fires"
    )
    between: list[float] | None = checked(
        None, _low_high, doc="[low, high]: fires when low <= prediction <= high"
    )
    below: float | None = described(None, doc="fires when prediction < below")
    above: float | None = described(None, doc="fires when prediction > above")
    action: RuleAction = described(RuleAction.flag, doc="what a firing rule does to the output")
    value: float | None = described(None, doc="the value action: set returns")


@dataclass
class PostprocessConfig:
    threshold: float | None = ranged(
        None, 0.0, 1.0, doc="binary: positive when P(positive) >= threshold; null: 0.5"
    )
    labels: list[str] | None = described(
        None,
        doc="classification: names returned for the classes, in the training labels' sorted order",
    )
    top_k: int | None = ranged(
        None, 1, doc="multiclass: also return the k most likely classes and their probabilities"
    )
    clip_min: float | None = described(None, doc="regression: the smallest value returned")
    clip_max: float | None = described(None, doc="regression: the largest value returned")
    round: int | None = ranged(None, 0, 12, doc="regression: decimals of the returned value")
    rules: list[RuleSpec] = described(
        factory=list, doc="business rules on the raw prediction, applied in order"
    )


def _version_or_stage(ref: str) -> str | None:
    if not re.fullmatch(r"[vV]?\d+|[a-z][a-z0-9_-]*", str(ref)):
        return f"{ref!r} is neither a version number nor a stage name"
    return None


@dataclass
class CanaryConfig:
    version: str | None = checked(
        None,
        _version_or_stage,
        doc="a version number or stage that answers percent of requests; null: no canary",
    )
    percent: float = ranged(0.0, 0.0, 100.0, doc="the share of requests the canary answers, in %")


@dataclass
class ServedModel:
    version: str = checked(
        "production",
        _version_or_stage,
        doc="a stage (followed as it moves) or a pinned version number",
    )
    canary: CanaryConfig = described(
        factory=CanaryConfig, doc="a second version answering a share of requests"
    )
    shadow: str | None = checked(
        None,
        _version_or_stage,
        doc="a version that sees a copy of every request, logged only; null: none",
    )
    postprocess: PostprocessConfig = described(
        factory=PostprocessConfig, doc="what is returned beside the raw prediction"
    )


@dataclass
class BatchingConfig:
    max_batch_size: int = ranged(32, 1, doc="requests per model call (@serve.batch)")
    wait_ms: float = ranged(
        2.0, 0.0, doc="ms a batch waits to fill, only while other batches are in flight"
    )


@dataclass
class ExplainConfig:
    steps: int = ranged(
        64, 2, doc="Integrated Gradients' points from the baseline to the row (torch models)"
    )
    max_batch_size: int = ranged(
        8, 1, doc="explain requests per model call: a batch of their own, apart from predict's"
    )
    wait_ms: float = ranged(
        2.0, 0.0, doc="ms an explain batch waits to fill, only while others are in flight"
    )
    importance_rows: int = ranged(
        256, 1, doc="reference rows the model card's global importance averages over"
    )


@dataclass
class PredictionLogConfig:
    flush_rows: int = ranged(2000, 1, doc="a parquet file is written once this many rows wait")
    flush_seconds: float = ranged(
        5.0,
        0.0,
        lo_open=True,
        doc="or a file is written once the oldest waiting row is this many seconds old",
    )
    # a replica's rows survive its death there
    spool: str | None = described(
        None,
        doc="local directory where rows wait to be written; null: keel-spool-<uid> in the temp dir",
    )


@dataclass
class ServeConfig:
    app_name: str = described("keel", doc="the Ray Serve application's name")
    host: str = described("127.0.0.1", doc="where the HTTP proxies listen (0.0.0.0 for a cluster)")
    port: int = ranged(8000, 1, 65535, doc="the app's HTTP port")
    proxy_location: ProxyLocation = described(
        ProxyLocation.EveryNode, doc="where Serve runs HTTP proxies"
    )
    models: dict[str, ServedModel] = described(
        factory=dict, doc="registry model -> how it is served; empty: the dataset's own model"
    )
    # false gives each model its own batching, scaling and GPU placement, for one hop more
    fused: bool = described(
        True, doc="the models run inside each ingress replica; false: a deployment per model"
    )
    explain: ExplainConfig = described(
        factory=ExplainConfig, doc="explanations: IG steps, their own batching, the card's rows"
    )
    batching: BatchingConfig = described(
        factory=BatchingConfig, doc="how requests are batched into model calls"
    )
    autoscaling: dict[str, Any] = described(
        factory=dict, doc="Serve autoscaling_config keys; the rest from the SLO and latency profile"
    )
    max_replicas: int = ranged(4, 1, doc="most replicas per model when autoscaling is derived")
    replica_cpus: float = ranged(
        0.25,
        0.0,
        lo_open=True,
        doc="CPUs Ray reserves per replica (a fraction fits several on one)",
    )
    replica_gpus: float = ranged(
        0.0, 0.0, doc="GPUs per replica that runs a model (a fraction shares one)"
    )
    ingress_replicas: int = ranged(1, 1, doc="ingress replicas when not fused")
    max_rows_per_request: int = ranged(1000, 1, doc="instances a request may hold (more: 422)")
    max_body_bytes: int = ranged(1_000_000, 1, doc="bytes a request body may hold (more: 413)")
    auth_token_env: str | None = described(
        None, doc="the env var holding the bearer token requests must send; null: no token"
    )
    reload_seconds: float = ranged(
        2.0, 0.0, lo_open=True, doc="how often replicas re-read the registry's stages"
    )
    log: PredictionLogConfig = described(
        factory=PredictionLogConfig, doc="how predictions and requests are written to the log"
    )


@dataclass
class DriftSpec:
    """A drift test: an Evidently method name (ks, wasserstein, psi, jensenshannon, ...) and its
    threshold; unset keys keep Evidently's defaults (chosen by column type and data size)."""

    method: str | None = described(
        None, doc="drift method (ks, wasserstein, psi, jensenshannon, ...); null: Evidently's pick"
    )
    threshold: float | None = ranged(
        None, 0.0, lo_open=True, doc="the method's drift threshold; null: the method's default"
    )


@dataclass
class RetrainConfig:
    # null learns from the regime that failed (monitor.window back when no verdict asked)
    window: str | None = duration(
        None, doc="recent labeled predictions to learn from; null: since the verdict's window began"
    )
    recent_weight: int = ranged(2, 1, doc="copies of each recent labeled row in the training data")
    original_fraction: float = ranged(
        1.0, 0.0, 1.0, doc="share of the served version's original training rows kept"
    )
    holdout: float = ranged(
        0.3,
        0.0,
        1.0,
        lo_open=True,
        doc="share of recent labeled rows held out to judge champion and challenger",
    )
    margin: float = ranged(
        0.01, 0.0, doc="how much the challenger's primary metric must beat the champion's by"
    )
    min_labeled: int = ranged(
        200, 1, doc="fewer recent labeled rows: nothing to learn or judge by, no retraining"
    )
    # a challenger of another family competes on the same recent holdout as any other
    model: str | None = described(
        None, doc="the challenger's model config (conf/model/NAME.yaml); null: the champion's"
    )


@dataclass
class MonitorConfig:
    window: str = duration("1d", doc="how far back from now the prediction log is read")
    min_rows: int = ranged(100, 1, doc="fewer rows (or labels) than this: the check is skipped")
    current_sample: int = ranged(
        100_000, 1, doc="window rows compared with the reference (a uniform sample when more)"
    )
    reference_sample: int = ranged(
        50_000, 1, doc="training rows stored with each version as its drift reference"
    )
    drift: DriftSpec = described(factory=DriftSpec, doc="the drift test of every input column")
    columns: dict[str, DriftSpec] = described(
        factory=dict, doc="column -> its own drift test, instead of monitor.drift"
    )
    prediction_drift: DriftSpec = described(
        factory=DriftSpec, doc="the drift test of the model's predictions"
    )
    # keel's report.html and the verdict do not need it
    evidently_report: bool = described(
        False, doc="also write Evidently's interactive drift report (a few seconds more)"
    )
    retrain_on: list[Check] = described(
        factory=lambda: list(Check), doc="failed checks that make the verdict ask for retraining"
    )
    retrain: RetrainConfig = described(
        factory=RetrainConfig, doc="how keel retrain builds and judges a challenger"
    )


@dataclass
class SimulateConfig:
    """Generated traffic for a running app: the dataset's generator with its drift knobs
    (dataset.source.drift), ground-truth labels posted as feedback after a delay."""

    model: str = described("${dataset.name}", doc="the served model the traffic goes to")
    url: str | None = described(None, doc="the app's URL; null: http://{serve.host}:{serve.port}")
    rows: int = ranged(2_000, 1, doc="rows sent for prediction")
    seed: int = described(1_000, doc="seed of the traffic's rows (not the training data's)")
    invalid_fraction: float = ranged(
        0.0, 0.0, 0.5, doc="share of planted invalid rows (synthetic); their requests get 422"
    )
    batch_rows: int = ranged(20, 1, 1_000, doc="instances per request")
    concurrency: int = ranged(4, 1, 256, doc="requests in flight at once")
    feedback_fraction: float = ranged(
        1.0, 0.0, 1.0, doc="share of served rows whose label is posted as feedback"
    )
    feedback_delay_seconds: float = ranged(
        1.0, 0.0, doc="seconds between the predictions and posting their labels"
    )
    # drawn under `seed`, with replacement when fewer than `rows`
    path: str | None = described(
        None, doc="file datasets: a file of the dataset's format to replay; null: the test split"
    )


# ----------------------------------------------------------------------------- infrastructure


class TrackingMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class TrackingConfig:
    mode: TrackingMode = described(
        TrackingMode.offline, doc="wandb's mode: offline runs are uploaded later by wandb sync"
    )
    project: str = described("keel", doc="the wandb project of the runs")
    entity: str | None = described(None, doc="the wandb team or user; null: wandb's default")


@dataclass
class PathsConfig:
    root: str = described(
        "outputs", doc="where a run writes: a local directory or a pyarrow URI (s3://bucket/keel)"
    )
    data: str = described(
        "${paths.root}/data", doc="datasets keel writes: retraining rows, benchmark data"
    )
    reports: str = described(
        "${paths.root}/reports", doc="validation, sweep, monitoring and retraining reports"
    )
    registry: str = described("${paths.root}/registry", doc="the model registry")
    logs: str = described("${paths.root}/logs", doc="the prediction, request and feedback logs")
    checkpoints: str = described(
        "${paths.root}/checkpoints", doc="Ray Train and Tune checkpoints and run state"
    )


@dataclass
class RayConfig:
    address: str | None = described(
        None, doc="null: start an embedded local Ray; else a cluster, e.g. ray://host:10001"
    )
    num_cpus: int | None = ranged(None, 1, doc="CPUs of the embedded Ray; null: the machine's")
    num_gpus: int | None = ranged(None, 0, doc="GPUs of the embedded Ray; null: those found")
    include_dashboard: bool = described(False, doc="start Ray's dashboard with the embedded Ray")
    namespace: str = described("keel", doc="the Ray namespace keel's drivers join")
    progress_bars: bool = described(True, doc="Ray Data's progress bars on the console")
    verbose: bool = described(
        False, doc="Ray's own output on the console too, not only in its log files (--verbose)"
    )
    env_vars: dict[str, str] = described(
        factory=dict, doc="environment variables for every Ray worker, here and on a cluster"
    )
    # Ray reads it when it starts; a cluster's nodes set their own
    local_env: dict[str, str] = described(
        factory=dict, doc="the environment of the embedded Ray keel starts, never a cluster's"
    )
    data_context: dict[str, Any] = described(
        factory=dict, doc="ray.data.DataContext settings: name -> value"
    )


@dataclass
class BenchConfig:
    name: str = described(MISSING, doc="the benchmark, as in conf/bench/NAME.yaml, or all")
    rows: int = ranged(1_000_000, 1, doc="rows of the benchmark's dataset")
    repeats: int = ranged(3, 1, doc="rounds, each running every side of the comparison once")
    params: dict[str, Any] = described(
        factory=dict, doc="the benchmark's own settings (see its conf/bench file)"
    )


@dataclass
class KeelConfig:
    dataset: DatasetConfig = described(
        MISSING, doc="the data: columns and their rules, source, split, validation policy"
    )
    features: FeaturesConfig = described(
        MISSING, doc="the features computed from the dataset's columns"
    )
    model: ModelConfig = described(MISSING, doc="the network: keel's MLP or a class of your own")
    train: TrainConfig = described(
        MISSING, doc="Ray Train: how long, batches, optimizer, workers, checkpoints"
    )
    sweep: SweepConfig = described(
        MISSING, doc="Ray Tune search: space, trials, scheduler (keel sweep)"
    )
    leaderboard: LeaderboardConfig = described(
        MISSING, doc="model families tried side by side under a time budget (keel leaderboard)"
    )
    slo: SloConfig = described(MISSING, doc="latency, throughput, error, quality and drift limits")
    serve: ServeConfig = described(
        MISSING, doc="the Ray Serve app: served models, batching, scaling, limits, request log"
    )
    monitor: MonitorConfig = described(
        MISSING, doc="drift, quality and SLO checks over the prediction log; retraining"
    )
    simulate: SimulateConfig = described(
        MISSING, doc="generated traffic and feedback for a running app (keel simulate)"
    )
    tracking: TrackingConfig = described(MISSING, doc="wandb experiment tracking")
    paths: PathsConfig = described(MISSING, doc="where everything is written")
    ray: RayConfig = described(MISSING, doc="the Ray keel starts or joins, and its settings")
    bench: BenchConfig | None = described(
        None, doc="a benchmark (python -m benchmarks bench=NAME); null: none"
    )
    seed: int = described(0, doc="seed of monitoring's samples and retraining's draws")


def register() -> None:
    """Register the root schema; conf/config.yaml lists it first so YAML merges into it."""
    ConfigStore.instance().store(name="keel_schema", node=KeelConfig)

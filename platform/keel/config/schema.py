"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Hydra type-checks YAML against these dataclasses at compose time (unknown keys, wrong types,
bad enum values). Ranges and cross-field rules live in `check.py`; a field's range is declared
here with `rng(lo, hi)` metadata so the rule sits next to the field it guards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """Field metadata for an allowed numeric range, enforced by keel.config.check."""
    return {"range": (lo, hi, lo_open)}


def ranged(default: Any, lo: float | None = None, hi: float | None = None, **kw):
    return field(default=default, metadata=rng(lo, hi, **kw))


def duration(default: str | None):
    """A field holding a duration ('30m', '6h', '1d'), checked by keel.config.check."""
    return field(default=default, metadata={"duration": True})


class Task(str, Enum):
    binary_classification = "binary_classification"
    multiclass_classification = "multiclass_classification"
    regression = "regression"


class Family(StrEnum):
    """A kind of model: how it is built, fitted, saved, loaded and applied (keel.models.family)."""

    torch = "torch"


class Check(StrEnum):
    """The monitor's checks, in verdict order."""

    drift = "drift"
    quality = "quality"
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


@dataclass
class ColumnSpec:
    type: ColumnType = MISSING
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    regex: str | None = None
    unique: bool = False
    description: str = ""
    # the column's name in the file when it differs (spaces, capitals): read under this name,
    # known everywhere else by its key
    source: str | None = None
    # timestamps not in ISO 8601: a strptime format such as "%m/%d/%Y %H:%M" (null: ISO 8601,
    # with or without a zone; zoned times are converted to UTC)
    format: str | None = None


@dataclass
class DriftConfig:
    # column -> shift: numeric columns move by this many standard deviations; categorical
    # columns move this share of rows to the column's least common category.
    covariate: dict[str, float] = field(default_factory=dict)
    concept: float = ranged(0.0, 0.0, 1.0)  # 0 = training relation, 1 = fully shifted relation


@dataclass
class SourceConfig:
    format: SourceFormat = SourceFormat.synthetic
    path: str | None = None  # file, directory or glob; local or a pyarrow filesystem URI
    generator: str | None = None  # synthetic generator name (defaults to the dataset name)
    rows: int = ranged(10_000, 1)
    seed: int = 0
    invalid_fraction: float = ranged(0.02, 0.0, 0.5)
    start: str = "2024-01-01"  # generated timestamps span [start, start + days)
    days: int = ranged(365, 1)
    chunk_rows: int = ranged(50_000, 1)  # rows per generator task
    drift: DriftConfig = field(default_factory=DriftConfig)
    # file sources: text values that mean "missing" in any column (CSV cells, JSON strings)
    null_values: list[str] = field(default_factory=lambda: list(NULL_VALUES))


@dataclass
class SplitConfig:
    train: float = ranged(0.7, 0.0, 1.0, lo_open=True)
    val: float = ranged(0.15, 0.0, 1.0)
    test: float = ranged(0.15, 0.0, 1.0)
    seed: int = 0


@dataclass
class ValidationPolicy:
    max_invalid_fraction: float = ranged(0.05, 0.0, 1.0)
    on_invalid: OnInvalid = OnInvalid.quarantine
    examples: int = ranged(5, 0, 100)  # example rows kept per rule in the report


@dataclass
class DatasetConfig:
    name: str = MISSING
    task: Task = MISSING
    target: str = MISSING
    id_column: str | None = None
    timestamp_column: str | None = None
    columns: dict[str, ColumnSpec] = MISSING
    slices: list[str] = field(default_factory=list)  # columns to report metrics per value of
    source: SourceConfig = field(default_factory=SourceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)


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


@dataclass
class FeatureSpec:
    transform: Transform = MISSING
    input: str | None = None  # the input column (every transform but ratio/difference)
    inputs: list[str] | None = None  # [a, b] for ratio (a / b) and difference (a - b)
    impute: Impute = Impute.none  # applied to the raw input(s) before the transform
    fill_value: Any = None  # for impute=constant
    scale: Scale = Scale.none  # applied after numeric transforms
    lower: float | None = None  # clip bounds ...
    upper: float | None = None
    lower_quantile: float | None = ranged(None, 0.0, 1.0)  # ... or bounds fitted as quantiles
    upper_quantile: float | None = ranged(None, 0.0, 1.0)
    boundaries: list[float] | None = None  # bucketize edges ...
    bins: int | None = ranged(None, 2, 1000)  # ... or this many quantile bins
    categories: list[str] | None = None  # fixed vocabulary / ordinal order (else fitted)
    max_categories: int = ranged(20, 1, 10_000)  # one_hot keeps the most frequent, rest -> other
    min_frequency: int = ranged(1, 1)
    buckets: int = ranged(16, 2, 1_000_000)  # hashed
    parts: list[DatePart] = field(default_factory=lambda: [DatePart.month, DatePart.dayofweek])
    cyclic: bool = False  # date_parts: each cyclic part as sine and cosine (hour 23 beside 0)
    by: str | None = None  # group_stat: statistic of `input` per value of `by`
    stat: GroupStat = GroupStat.mean


@dataclass
class FeaturesConfig:
    name: str = MISSING
    columns: dict[str, FeatureSpec] = MISSING  # output feature name -> how it is computed
    batch_size: int = ranged(65_536, 1)  # rows per Ray Data batch when fitting and transforming


# ----------------------------------------------------------------------------- model / train


@dataclass
class ModelConfig:
    name: str = "mlp"
    _target_: str | None = None  # a user model class; gets `in_features`, `out_features`, params
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = ranged(0.1, 0.0, 1.0)
    norm: Norm = Norm.none
    activation: Activation = Activation.relu
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    # How long: `steps` optimizer steps (epochs = steps / batches per epoch, kept within
    # [min_epochs, max_epochs]) and early stopping, so small and large data both train enough;
    # a number in `epochs` pins the epochs instead.
    epochs: int | None = ranged(None, 1)
    steps: int = ranged(3000, 1)
    min_epochs: int = ranged(5, 1)
    max_epochs: int = ranged(300, 1)
    # rows per optimizer step; null: auto, from the training rows (see keel.training.plan)
    batch_size: int | None = ranged(None, 1)
    optimizer: Optimizer = Optimizer.adamw
    lr: float = ranged(1e-3, 0.0, lo_open=True)
    weight_decay: float = ranged(0.0, 0.0)
    num_workers: int = ranged(1, 0)
    use_gpu: str = "auto"  # auto | true | false
    cpus_per_worker: float = ranged(1.0, 0.0, lo_open=True)
    placement_strategy: PlacementStrategy = PlacementStrategy.PACK
    precision: Precision = Precision.auto
    early_stopping_patience: int = ranged(5, 0)  # epochs without a better val_loss; 0: never
    # a resumable checkpoint at most this often (0: every epoch); the last epoch always has one,
    # holding the best weights
    checkpoint_seconds: float = ranged(10.0, 0.0)
    # a worker whose shard holds at most this many feature values loads it once into tensors
    # and shuffles it itself each epoch; larger shards stream from Ray Data every epoch
    in_memory_values: int = ranged(50_000_000, 0)
    checkpoints_to_keep: int = ranged(2, 1)
    max_failures: int = ranged(1, -1)
    seed: int = 0


@dataclass
class SweepConfig:
    metric: str = "val_loss"
    mode: Mode = Mode.min
    samples: int = ranged(8, 1)
    concurrency: int = ranged(2, 1)
    scheduler: Scheduler = Scheduler.asha
    grace_period: int = ranged(1, 1)
    reduction_factor: int = ranged(2, 2)
    cpus_per_trial: float = ranged(0.25, 0.0, lo_open=True)
    space: dict[str, Any] = field(default_factory=dict)  # config path -> {distribution: args}


# ------------------------------------------------------------------------ SLO / serve / monitor


@dataclass
class SloConfig:
    latency_p99_ms: float = ranged(100.0, 0.0, lo_open=True)
    throughput_rps: float = ranged(50.0, 0.0, lo_open=True)
    max_error_rate: float = ranged(0.01, 0.0, 1.0)
    quality_floor: dict[str, float] = field(default_factory=dict)  # metric -> minimum
    max_drift_share: float = ranged(0.3, 0.0, 1.0)
    max_invalid_fraction: float = ranged(0.05, 0.0, 1.0)


class RuleAction(str, Enum):
    flag = "flag"  # name the rule in the output's `rules` (e.g. route to human review)
    set = "set"  # replace the output value with `value` (e.g. a price floor)


@dataclass
class RuleSpec:
    """A declared business rule on the raw prediction; exactly one condition is given."""

    name: str = MISSING
    between: list[float] | None = None  # fires when low <= prediction <= high
    below: float | None = None  # fires when prediction < below
    above: float | None = None  # fires when prediction > above
    action: RuleAction = RuleAction.flag
    value: float | None = None  # for action=set


@dataclass
class PostprocessConfig:
    threshold: float | None = ranged(None, 0.0, 1.0)  # binary: positive when P >= threshold
    labels: list[str] | None = None  # names of the classes, in the training labels' order
    top_k: int | None = ranged(None, 1)  # multiclass: the k most likely classes
    clip_min: float | None = None  # regression: bounds of the returned value
    clip_max: float | None = None
    round: int | None = ranged(None, 0, 12)  # decimals of the returned value
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass
class CanaryConfig:
    version: str | None = None  # a version number (or stage) that gets `percent` of requests
    percent: float = ranged(0.0, 0.0, 100.0)


@dataclass
class ServedModel:
    version: str = "production"  # a stage (followed as it moves) or a pinned version number
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    shadow: str | None = None  # a version that sees a copy of every request, logged only
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass
class BatchingConfig:
    max_batch_size: int = ranged(32, 1)  # requests per model call (@serve.batch)
    wait_ms: float = ranged(2.0, 0.0)  # how long a batch waits to fill, when others are in flight


@dataclass
class PredictionLogConfig:
    flush_rows: int = ranged(2000, 1)  # write a parquet file once this many rows are buffered
    flush_seconds: float = ranged(5.0, 0.0, lo_open=True)  # ... or when the oldest is this old
    # a local directory on each serving machine where rows wait until written; a replica's
    # rows survive its death there (null: keel-spool-<uid> in the system's temporary directory)
    spool: str | None = None


@dataclass
class ServeConfig:
    app_name: str = "keel"
    host: str = "127.0.0.1"
    port: int = ranged(8000, 1, 65535)
    proxy_location: ProxyLocation = ProxyLocation.EveryNode  # where Serve runs HTTP proxies
    # registry model -> how it is served; empty: the experiment's own model (dataset.name)
    models: dict[str, ServedModel] = field(default_factory=dict)
    # true: the models run inside each ingress replica (one hop fewer; they scale together);
    # false: a deployment per model behind the ingress (own batching, scaling, GPU placement)
    fused: bool = True
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    # Serve autoscaling_config keys; the ones left out are derived from the SLO and the
    # served version's latency profile (keel.serving.autoscale).
    autoscaling: dict[str, Any] = field(default_factory=dict)
    max_replicas: int = ranged(4, 1)  # upper bound for derived autoscaling
    replica_cpus: float = ranged(0.25, 0.0, lo_open=True)
    replica_gpus: float = ranged(0.0, 0.0)
    ingress_replicas: int = ranged(1, 1)
    max_rows_per_request: int = ranged(1000, 1)
    max_body_bytes: int = ranged(1_000_000, 1)
    auth_token_env: str | None = None  # name of the env var holding the bearer token
    reload_seconds: float = ranged(2.0, 0.0, lo_open=True)  # how often replicas check stages
    log: PredictionLogConfig = field(default_factory=PredictionLogConfig)


@dataclass
class DriftSpec:
    """A drift test: an Evidently method name (ks, wasserstein, psi, jensenshannon, ...) and its
    threshold; unset keys keep Evidently's defaults (chosen by column type and data size)."""

    method: str | None = None
    threshold: float | None = ranged(None, 0.0, lo_open=True)


@dataclass
class RetrainConfig:
    # labeled production data to learn from: a duration back from now, or null for "since the
    # window of the verdict that asked for retraining began" (monitor.window when there is none)
    window: str | None = duration(None)
    recent_weight: int = ranged(2, 1)  # copies of each recent labeled row in the training data
    original_fraction: float = ranged(1.0, 0.0, 1.0)  # share of the original training rows kept
    holdout: float = ranged(0.3, 0.0, 1.0, lo_open=True)  # recent rows kept to judge both models
    margin: float = ranged(0.01, 0.0)  # how much the challenger must beat the champion by
    min_labeled: int = ranged(200, 1)  # fewer recent labeled rows: nothing to learn or judge by


@dataclass
class MonitorConfig:
    window: str = duration("1d")  # how far back from now the prediction log is read (6h, 1d)
    min_rows: int = ranged(100, 1)  # fewer rows (or labels) than this: the check is skipped
    current_sample: int = ranged(100_000, 1)  # window rows compared with the reference
    reference_sample: int = ranged(50_000, 1)  # training rows kept with a version as reference
    drift: DriftSpec = field(default_factory=DriftSpec)  # for every column
    columns: dict[str, DriftSpec] = field(default_factory=dict)  # per-column overrides
    prediction_drift: DriftSpec = field(default_factory=DriftSpec)
    # also write Evidently's interactive drift and summary report (evidently.html and .json),
    # a few seconds more per run; keel's report.html and the verdict do not need it
    evidently_report: bool = False
    retrain_on: list[Check] = field(default_factory=lambda: list(Check))  # failed: retrain
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


@dataclass
class SimulateConfig:
    """Generated traffic for a running app: the dataset's generator with its drift knobs
    (dataset.source.drift), ground-truth labels posted as feedback after a delay."""

    model: str = "${dataset.name}"
    url: str | None = None  # default: http://{serve.host}:{serve.port}
    rows: int = ranged(2_000, 1)
    seed: int = 1_000  # generator seed for the traffic (not the training data's)
    invalid_fraction: float = ranged(0.0, 0.0, 0.5)  # planted invalid rows (each request: 422)
    batch_rows: int = ranged(20, 1, 1_000)  # instances per request
    concurrency: int = ranged(4, 1, 256)
    feedback_fraction: float = ranged(1.0, 0.0, 1.0)  # share of served rows whose label is posted
    feedback_delay_seconds: float = ranged(1.0, 0.0)
    # file datasets: the rows to replay, drawn under `seed` (with replacement when fewer than
    # `rows`); null: the dataset's test split, which training never saw; or a second file of
    # the dataset's format
    path: str | None = None


# ----------------------------------------------------------------------------- infrastructure


class TrackingMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "keel"
    entity: str | None = None


@dataclass
class PathsConfig:
    root: str = "outputs"  # local directory or pyarrow filesystem URI (s3://bucket/keel)
    data: str = "${paths.root}/data"
    reports: str = "${paths.root}/reports"
    registry: str = "${paths.root}/registry"
    logs: str = "${paths.root}/logs"
    checkpoints: str = "${paths.root}/checkpoints"


@dataclass
class RayConfig:
    address: str | None = None  # null: start an embedded local Ray; else e.g. ray://host:10001
    num_cpus: int | None = ranged(None, 1)
    num_gpus: int | None = ranged(None, 0)
    include_dashboard: bool = False
    namespace: str = "keel"
    progress_bars: bool = True
    # true: Ray's own output (workers, Train's controller, Ray Data's progress logs) on the
    # console too; false: only keel's progress and summaries there, Ray's in its log files
    # (`keel JOB --verbose` sets it)
    verbose: bool = False
    env_vars: dict[str, str] = field(default_factory=dict)  # forwarded to every worker
    # the environment of the embedded Ray keel starts (Ray reads it at start); never sent to a
    # cluster, whose nodes set their own
    local_env: dict[str, str] = field(default_factory=dict)
    data_context: dict[str, Any] = field(default_factory=dict)  # ray.data.DataContext settings


@dataclass
class BenchConfig:
    name: str = MISSING
    rows: int = ranged(1_000_000, 1)
    repeats: int = ranged(3, 1)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeelConfig:
    dataset: DatasetConfig = MISSING
    features: FeaturesConfig = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    sweep: SweepConfig = MISSING
    slo: SloConfig = MISSING
    serve: ServeConfig = MISSING
    monitor: MonitorConfig = MISSING
    simulate: SimulateConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: PathsConfig = MISSING
    ray: RayConfig = MISSING
    bench: BenchConfig | None = None
    seed: int = 0


def register() -> None:
    """Register the root schema; conf/config.yaml lists it first so YAML merges into it."""
    ConfigStore.instance().store(name="keel_schema", node=KeelConfig)

"""What a sample of a user's file says about it: column types, roles, task, features, floor.

`keel init` reads a sample of rows and calls `infer(sample, ...)`, which returns the dataset,
features and serving it proposes as keel's own config dataclasses, plus the evidence for each
choice. Every rule is a small pure function over a pyarrow Table or one column's `Profile`, so
each can be tested without Ray or files. Text is read as written (a CSV's cells are all text):
the type rules parse it with the same readers validation later uses, so what is inferred as
an int is what validation accepts as one.
"""

from __future__ import annotations

import keyword
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keel.config.schema import (
    ColumnSpec,
    ColumnType,
    DatasetConfig,
    DatePart,
    FeaturesConfig,
    FeatureSpec,
    Impute,
    PostprocessConfig,
    Scale,
    ServedModel,
    SourceConfig,
    SourceFormat,
    SplitConfig,
    Task,
    Transform,
    ValidationPolicy,
)
from keel.data.batch import numeric, text, timestamps
from keel.data.sources import null_texts
from keel.data.validation import FALSE_WORDS, TRUE_WORDS  # the words validation reads as booleans
from keel.errors import ConfigError, DataError
from keel.quality import PRIMARY

# ----------------------------------------------------------------------------- thresholds

CATEGORY_MAX = 50  # text with at most this many values ...
CATEGORY_SHARE = 0.5  # ... each seen at least twice on average is a category, else a string
LISTED_MAX = 1000  # distinct text values kept per column (a text target's classes)
ONE_HOT_MAX = 20  # categories one-hot encoded; more are hashed
HASH_BUCKETS = (16, 1024)  # hashed features get the power of 2 >= distinct values, within these
MULTICLASS_MAX = 20  # an int target with at most this many values is a class label
SLICE_MAX = 10  # categories with at most this many values can be slices ...
SLICES = 2  # ... and this many are
SKEW = 1.0  # a never-negative number skewed more than this is log1p-transformed
MARGIN = 0.1  # min/max widened by this share of the seen range on each side
FLOOR_LIFT = 0.3  # multiclass floor: this share of the way from the baseline to a perfect score
FIXED_FLOORS = {  # binary and regression floors, clearly above the trivial baselines
    Task.binary_classification: (0.65, 0.5),  # (floor, baseline): ROC AUC of a constant
    Task.regression: (0.3, 0.0),  # R2 of predicting the training mean
}
FILL = "unknown"  # what a missing category becomes before encoding
DATE_PARTS = (DatePart.month, DatePart.dayofweek, DatePart.hour)  # used when they vary
ID_NAME = re.compile(r"(^|_)(id|key|uuid|guid)$")  # on the snake_case key: id, user_id, userId
INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")
HEAD = 20  # values tried first when a rule needs every value to parse
# Timestamps not in ISO 8601, tried in this order (month-first before day-first: a sample where
# every day is <= 12 cannot tell them apart, and the US order is the more common in exports).
TIMESTAMP_FORMATS = (
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%m-%d-%Y",
    "%d-%m-%Y",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d, %Y",
)
SUFFIX_FORMATS = {  # the suffixes Ray Data's readers take by default
    ".csv": SourceFormat.csv,
    ".parquet": SourceFormat.parquet,
    ".json": SourceFormat.json,
    ".jsonl": SourceFormat.json,
}
TEXT_TYPES = (ColumnType.category, ColumnType.string, ColumnType.bool)
NUMBER_TYPES = (ColumnType.int, ColumnType.float)


class Role(str, Enum):
    target = "target"
    id = "id"
    timestamp = "timestamp"
    feature = "feature"
    slice = "slice"  # a feature whose values also split the test metrics
    unused = "unused"


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Profile:
    """What the sample says about one column."""

    source: str  # the name in the file
    key: str  # the name keel knows it by (snake_case)
    type: ColumnType
    rows: int
    nulls: int
    distinct: int
    format: str | None = None  # a timestamp's strptime format when not ISO 8601
    low: float | None = None  # numbers: the smallest and largest seen
    high: float | None = None
    skew: float | None = None
    integral: bool = False  # numbers: every value is a whole number
    top_share: float = 0.0  # share of the present values taken by the most frequent one
    categories: tuple[str, ...] = ()  # text: the values seen, sorted (up to LISTED_MAX)
    parts: tuple[DatePart, ...] = ()  # timestamps: the DATE_PARTS that vary

    @property
    def present(self) -> int:
        return self.rows - self.nulls

    @property
    def nullable(self) -> bool:
        return self.nulls > 0

    @property
    def all_unique(self) -> bool:
        return self.nulls == 0 and self.distinct == self.rows


@dataclass(frozen=True)
class FeatureChoice:
    """The feature made from one column, or None and why not."""

    column: str
    spec: FeatureSpec | None
    reason: str  # why, when the transform alone does not say (empty for a plain number)


@dataclass(frozen=True)
class Floor:
    metric: str
    value: float
    baseline: float
    reason: str


@dataclass
class Inference:
    dataset: DatasetConfig
    profiles: list[Profile]  # file order
    choices: list[FeatureChoice]  # file order, one per column
    floor: Floor
    served: ServedModel
    notes: list[str] = field(default_factory=list)  # what the user should look at

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def rows(self) -> int:
        return self.profiles[0].rows if self.profiles else 0

    @property
    def features(self) -> FeaturesConfig:
        cols = {c.column: c.spec for c in self.choices if c.spec is not None}
        return FeaturesConfig(name=self.name, columns=cols)

    def profile(self, key: str) -> Profile:
        return next(p for p in self.profiles if p.key == key)

    def role(self, key: str) -> Role:
        ds = self.dataset
        fixed = {ds.target: Role.target, ds.id_column: Role.id, ds.timestamp_column: Role.timestamp}
        if key in fixed:
            return fixed[key]
        if key in ds.slices:
            return Role.slice
        used = any(c.column == key and c.spec is not None for c in self.choices)
        return Role.feature if used else Role.unused


# ----------------------------------------------------------------------------- names


def column_key(name: str) -> str:
    """A file's column name as a keel key: snake_case letters, digits and underscores,
    starting with a letter ("Flipper Length (mm)" -> flipper_length_mm, "userId" -> user_id)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", ascii_name)
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words)
    key = re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_") or "column"
    if not key[0].isalpha() or keyword.iskeyword(key):
        key = f"col_{key}"
    return key


def column_keys(names: Sequence[str]) -> dict[str, str]:
    """File name -> key for every column, in file order; repeated keys get _2, _3, ..."""
    taken: set[str] = set()
    out = {}
    for name in names:
        base = key = column_key(name)
        n = 1
        while key in taken:
            n += 1
            key = f"{base}_{n}"
        taken.add(key)
        out[name] = key
    return out


def dataset_name(path: str) -> str:
    """The default dataset name: the file's stem (a directory's name) as a key."""
    last = PurePosixPath(path.split("://", 1)[-1].rstrip("/")).name
    stem = last.split(".", 1)[0] if "." in last else last
    return column_key(stem)


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ConfigError(
            f"--name {name!r}: use letters, digits, '_' and '-' (it names config files)"
        )
    return name


def format_from_suffix(path: str) -> SourceFormat | None:
    """csv, parquet or json from a file name's suffix; None when it has none of them."""
    return SUFFIX_FORMATS.get(PurePosixPath(path).suffix.lower())


def csv_text_options(names: Sequence[str], source: SourceConfig) -> pacsv.ConvertOptions:
    """Read every CSV column as the text written (quotes removed), the source's null spellings
    as nulls as keel's reader does: the type rules see what the file says, not a guess."""
    return pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=True,
        null_values=null_texts(source),
    )


# ----------------------------------------------------------------------------- types


def without_markers(col: pa.ChunkedArray | pa.Array, null_values: Sequence[str]) -> pa.Array:
    """Text columns with the null markers as nulls (JSON strings carry them too)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col
    marker = pc.is_in(col, value_set=pa.array(list(null_values), col.type))
    return pc.if_else(marker, pa.scalar(None, col.type), col)


def looks_bool(values: Sequence[str]) -> bool:
    """yes/no, true/false, y/n, t/f, 1/0 (any case); 0/1 alone stays an int (a 0/1 target
    is a class label, and a 0/1 column reads as a number either way)."""
    lowered = {v.lower() for v in values}
    return bool(lowered) and lowered <= (TRUE_WORDS | FALSE_WORDS) and not lowered <= {"0", "1"}


def looks_int(values: Sequence[str]) -> bool:
    return bool(values) and all(INT_TEXT.fullmatch(v) for v in values)


def looks_float(values: Sequence[str]) -> bool:
    """Every value a finite number as validation reads it ("1e3", " 2.5"; not "inf")."""
    nums = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    return bool(len(values)) and bool(np.isfinite(nums.to_numpy(dtype=np.float64)).all())


def looks_iso_timestamp(values: Sequence[str]) -> bool:
    """Every value parses as ISO 8601 (with or without a zone), as validation reads it."""

    def parses(some: Sequence[str]) -> bool:
        parsed = timestamps(pa.table({"v": pa.array(list(some), pa.string())}), "v")
        return not np.isnat(parsed).any()

    # the first few values rule most columns out before all of them are parsed
    return bool(len(values)) and parses(values[:HEAD]) and parses(values)


def timestamp_format(values: Sequence[str]) -> str | None:
    """The first of TIMESTAMP_FORMATS that parses every value, or None."""

    def parses(some: Sequence[str], fmt: str) -> bool:
        series = pd.Series(list(some), dtype=object)
        return bool(pd.to_datetime(series, format=fmt, errors="coerce").notna().all())

    if not len(values):
        return None
    return next(
        (f for f in TIMESTAMP_FORMATS if parses(values[:HEAD], f) and parses(values, f)), None
    )


def is_category(distinct: int, present: int) -> bool:
    """Few values, each repeated: a category; otherwise free text, names or codes."""
    return 0 < distinct <= CATEGORY_MAX and distinct <= CATEGORY_SHARE * present


def text_type(values: Sequence[str], present: int) -> tuple[ColumnType, str | None]:
    """The type (and timestamp format) of a text column from its distinct values."""
    if looks_bool(values):
        return ColumnType.bool, None
    if looks_int(values):
        return ColumnType.int, None
    if looks_float(values):
        return ColumnType.float, None
    if looks_iso_timestamp(values):
        return ColumnType.timestamp, None
    if fmt := timestamp_format(values):
        return ColumnType.timestamp, fmt
    if is_category(len(values), present):
        return ColumnType.category, None
    return ColumnType.string, None


def arrow_type(kind: pa.DataType, name: str) -> ColumnType | None:
    """The type of a typed (parquet, JSON) column; None for text, which text_type decides."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return None
    if pa.types.is_boolean(kind):
        return ColumnType.bool
    if pa.types.is_integer(kind):
        return ColumnType.int
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return ColumnType.float
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return ColumnType.timestamp
    raise DataError(f"column {name!r} holds {kind}; keel reads columns of single values only")


# ----------------------------------------------------------------------------- profiles


def profile(table: pa.Table, source: str, key: str, null_values: Sequence[str]) -> Profile:
    """Type, nulls, range, skew, values and varying date parts of one column."""
    col = without_markers(table.column(source), null_values)
    one = pa.table({key: col})
    rows, nulls = len(col), col.null_count
    kind = arrow_type(col.type, source)
    words = _distinct_text(one, key) if kind in (None, ColumnType.bool) else []
    fmt = None
    if kind is None:
        kind, fmt = text_type(words, rows - nulls) if words else (ColumnType.string, None)
    base = Profile(source=source, key=key, type=kind, rows=rows, nulls=nulls, distinct=0)
    if kind in NUMBER_TYPES:
        return _numbers(base, numeric(one, key))
    if kind == ColumnType.timestamp:
        return _times(base, timestamps(one, key, fmt), fmt)
    shares = pc.value_counts(text(one, key).drop_null()).field("counts").to_numpy()
    top = float(shares.max() / shares.sum()) if len(shares) else 0.0
    listed = tuple(words) if len(words) <= LISTED_MAX else ()
    return replace(base, distinct=len(words), top_share=top, categories=listed)


def _distinct_text(one: pa.Table, key: str) -> list[str]:
    return sorted(pc.unique(text(one, key).drop_null()).to_pylist())


def _numbers(base: Profile, values: np.ndarray) -> Profile:
    v = values[np.isfinite(values)]
    if not len(v):
        return base
    uniq, counts = np.unique(v, return_counts=True)
    return replace(
        base,
        distinct=len(uniq),
        low=float(v.min()),
        high=float(v.max()),
        skew=skewness(v),
        integral=bool(np.all(v == np.round(v))),
        top_share=float(counts.max() / len(v)),
    )


def skewness(v: np.ndarray) -> float:
    """Sample skewness (the third standardized moment); 0 for a constant."""
    centered = v - v.mean()
    m2 = float(np.mean(centered**2))
    return float(np.mean(centered**3)) / m2**1.5 if m2 > 0 else 0.0


def _times(base: Profile, values: np.ndarray, fmt: str | None) -> Profile:
    t = pd.DatetimeIndex(values[~np.isnat(values)])
    return replace(base, format=fmt, distinct=t.nunique(), parts=varying_parts(t))


def varying_parts(t: pd.DatetimeIndex) -> tuple[DatePart, ...]:
    """The DATE_PARTS that take more than one value in the sample (hour: times vary)."""
    values = {DatePart.month: t.month, DatePart.dayofweek: t.dayofweek, DatePart.hour: t.hour}
    return tuple(p for p in DATE_PARTS if len(set(values[p])) > 1)


# ----------------------------------------------------------------------------- roles


def find_target(profiles: Sequence[Profile], target: str) -> Profile:
    """The target by its name in the file or its key."""
    for p in profiles:
        if target in (p.source, p.key):
            return p
    names = ", ".join(p.source for p in profiles)
    raise ConfigError(f"--target {target!r} is not a column of the file (columns: {names})")


def is_id(p: Profile) -> bool:
    """Unique in the sample, an int or text, and named like an id or text that never repeats."""
    if not p.all_unique or p.rows < 2 or p.type not in (ColumnType.int, ColumnType.string):
        return False
    return bool(ID_NAME.search(p.key)) or p.type == ColumnType.string


def find_id(profiles: Sequence[Profile], target: str) -> str | None:
    """At most one id column: the first id-named one, else the first all-unique text."""
    found = [p for p in profiles if p.key != target and is_id(p)]
    found.sort(key=lambda p: not ID_NAME.search(p.key))  # stable: file order within each
    return found[0].key if found else None


def find_timestamp(profiles: Sequence[Profile], target: str) -> str | None:
    return next(
        (p.key for p in profiles if p.type == ColumnType.timestamp and p.key != target), None
    )


def find_slices(profiles: Sequence[Profile], exclude: Sequence[str]) -> list[str]:
    """The first SLICES categories (file order) with at most SLICE_MAX values."""
    fit = [
        p.key
        for p in profiles
        if p.type == ColumnType.category and p.key not in exclude and 1 < p.distinct <= SLICE_MAX
    ]
    return fit[:SLICES]


# ----------------------------------------------------------------------------- task


def is_label(p: Profile) -> bool:
    """Values that can name classes: text, booleans or whole numbers."""
    return p.type in TEXT_TYPES or (p.type in NUMBER_TYPES and p.integral)


def infer_task(p: Profile) -> Task:
    """Two values: binary; text, or whole numbers with few values: multiclass; else regression."""
    if p.distinct < 2:
        raise DataError(f"target {p.source!r} has {p.distinct} distinct value(s) in the sample")
    if p.distinct == 2:
        return Task.binary_classification
    if p.type in TEXT_TYPES or (is_label(p) and p.distinct <= MULTICLASS_MAX):
        return Task.multiclass_classification
    return Task.regression


def check_task(p: Profile, task: Task) -> None:
    """A task given with --task must fit the target's values."""
    if task == Task.regression and p.type not in NUMBER_TYPES:
        raise DataError(f"--task regression needs a numeric target; {p.source!r} is {p.type.value}")
    if task != Task.regression and not is_label(p):
        raise DataError(
            f"--task {task.value} needs class labels (text or whole numbers); {p.source!r} "
            f"has {p.distinct} distinct numbers: use --task regression"
        )
    if task == Task.binary_classification and p.distinct != 2:
        raise DataError(
            f"--task binary_classification needs 2 classes; {p.source!r} has {p.distinct} in "
            "the sample: use --task multiclass_classification"
        )
    if task == Task.multiclass_classification and p.type in TEXT_TYPES and not p.categories:
        raise DataError(f"target {p.source!r} has over {LISTED_MAX} classes in the sample")


def parse_task(text: str) -> Task:
    aliases = {"binary": "binary_classification", "multiclass": "multiclass_classification"}
    try:
        return Task(aliases.get(text, text))
    except ValueError:
        known = ", ".join(t.value for t in Task)
        raise ConfigError(f"--task {text!r}: choose one of {known}") from None


# ----------------------------------------------------------------------------- columns


def widen(low: float, high: float, integral: bool) -> tuple[float, float]:
    """The seen range widened by MARGIN on each side, so new rows slightly outside pass;
    never below 0 when nothing seen was (log1p and counts stay valid). Whole-number columns
    round outward to integers, others to 3 significant digits of the widened range."""
    span = high - low
    margin = MARGIN * (span if span > 0 else max(abs(high), 1.0))
    lo, hi = low - margin, high + margin
    if low >= 0:
        lo = max(lo, 0.0)
    if integral:
        return float(math.floor(lo)), float(math.ceil(hi))
    digits = 2 - math.floor(math.log10(hi - lo))
    step = 10.0**-digits
    places = max(digits, 0)
    return round(math.floor(lo / step) * step, places), round(math.ceil(hi / step) * step, places)


def column_spec(p: Profile) -> ColumnSpec:
    """How a feature (or unused) column is declared: its type and what new rows must meet."""
    spec = ColumnSpec(type=p.type, nullable=p.nullable, format=p.format)
    if p.type in NUMBER_TYPES and p.low is not None:
        spec.min, spec.max = widen(p.low, p.high, p.type == ColumnType.int)
    if p.type == ColumnType.category:
        spec.allowed = list(p.categories)
    if p.source != p.key:
        spec.source = p.source
    return spec


def id_spec(p: Profile) -> ColumnSpec:
    """Ids are unique and have no range: new rows bring new ids."""
    source = p.source if p.source != p.key else None
    return ColumnSpec(type=p.type, unique=True, source=source)


def target_spec(p: Profile, task: Task) -> ColumnSpec:
    """Never nullable (a row without a label cannot be learned from); class labels: text as a
    category with the classes seen, whole numbers as an int with the exact range."""
    source = p.source if p.source != p.key else None
    if task == Task.regression:
        return replace(column_spec(p), nullable=False)
    if p.type in TEXT_TYPES:
        return ColumnSpec(type=ColumnType.category, allowed=list(p.categories), source=source)
    return ColumnSpec(type=ColumnType.int, min=p.low, max=p.high, source=source)


# ----------------------------------------------------------------------------- features


def choose_feature(p: Profile) -> FeatureChoice:
    """The feature a column becomes, by its type and values."""
    if p.present == 0:
        return FeatureChoice(p.key, None, "no values in the sample")
    if p.distinct == 1:
        return FeatureChoice(p.key, None, "one value in the sample: no information")
    rule = {
        ColumnType.int: number_feature,
        ColumnType.float: number_feature,
        ColumnType.bool: bool_feature,
        ColumnType.category: category_feature,
        ColumnType.string: text_feature,
        ColumnType.timestamp: date_feature,
    }[p.type]
    return rule(p)


def number_feature(p: Profile) -> FeatureChoice:
    """Standardized; log1p first when never negative and skewed; two-valued flags as they are.
    A missing number takes the training median."""
    impute = Impute.median if p.nullable else Impute.none
    if p.distinct == 2:
        spec = FeatureSpec(transform=Transform.identity, input=p.key, impute=impute)
        return FeatureChoice(p.key, spec, "two values: a flag, used as it is")
    if p.low is not None and p.low >= 0 and (p.skew or 0.0) > SKEW:
        spec = FeatureSpec(
            transform=Transform.log1p, input=p.key, impute=impute, scale=Scale.standardize
        )
        return FeatureChoice(p.key, spec, f"skewed ({p.skew:.1f}) and never negative")
    spec = FeatureSpec(transform=Transform.standardize, input=p.key, impute=impute)
    return FeatureChoice(p.key, spec, "")


def bool_feature(p: Profile) -> FeatureChoice:
    """0/1 as it is; a missing one takes the most frequent value."""
    impute = Impute.most_frequent if p.nullable else Impute.none
    spec = FeatureSpec(transform=Transform.identity, input=p.key, impute=impute)
    return FeatureChoice(p.key, spec, "yes/true as 1")


def _missing_category(p: Profile) -> dict:
    return {"impute": Impute.constant, "fill_value": FILL} if p.nullable else {}


def category_feature(p: Profile) -> FeatureChoice:
    """One column per category (missing ones as FILL) up to ONE_HOT_MAX, else hashed."""
    if p.distinct > ONE_HOT_MAX:
        return text_feature(p)
    width = len(set(p.categories) | ({FILL} if p.nullable else set()))
    spec = FeatureSpec(
        transform=Transform.one_hot, input=p.key, max_categories=width, **_missing_category(p)
    )
    return FeatureChoice(p.key, spec, f"{p.distinct} categories")


def hash_buckets(distinct: int) -> int:
    """The power of 2 at or above the values seen, within HASH_BUCKETS."""
    lo, hi = HASH_BUCKETS
    return min(max(1 << max(distinct - 1, 1).bit_length(), lo), hi)


def text_feature(p: Profile) -> FeatureChoice:
    """Repeated text (codes, cities) is hashed into buckets; mostly unique text is not used."""
    if p.distinct > CATEGORY_SHARE * p.present:
        return FeatureChoice(p.key, None, "mostly unique text (names, free text)")
    buckets = hash_buckets(p.distinct)
    spec = FeatureSpec(
        transform=Transform.hashed, input=p.key, buckets=buckets, **_missing_category(p)
    )
    return FeatureChoice(p.key, spec, f"{p.distinct} values: hashed into {buckets} buckets")


def date_feature(p: Profile) -> FeatureChoice:
    """The date parts that vary in the sample, each as the sine and cosine of its cycle: an
    hourly curve read from hour/23 puts 23:00 farthest from midnight, and a small MLP on a
    600-row hourly file reached R2 ~0.35 that way against 0.45-0.75 with cycles."""
    if not p.parts:
        return FeatureChoice(p.key, None, "month, weekday and hour never vary")
    spec = FeatureSpec(
        transform=Transform.date_parts, input=p.key, parts=list(p.parts), cyclic=True
    )
    return FeatureChoice(p.key, spec, ", ".join(x.value for x in p.parts) + " vary")


# ----------------------------------------------------------------------------- floor, serving


def macro_f1_baseline(top_share: float, k: int) -> float:
    """Macro F1 of always predicting the majority class (share p of k classes): that class
    scores 2p / (1 + p), the others 0."""
    return 2 * top_share / (1 + top_share) / k


def quality_floor(task: Task, target: Profile) -> Floor:
    """A floor clearly above the trivial baseline for the task's primary metric."""
    metric = PRIMARY[task]
    if task in FIXED_FLOORS:
        value, baseline = FIXED_FLOORS[task]
        trivial = "a constant prediction" if metric == "roc_auc" else "the training mean"
        return Floor(metric, value, baseline, f"{trivial} scores {metric} {baseline:g}")
    k = target.distinct
    baseline = macro_f1_baseline(target.top_share, k)
    value = math.floor((baseline + FLOOR_LIFT * (1 - baseline)) * 100) / 100
    why = (
        f"always answering the majority class ({target.top_share:.0%} of {k} classes) scores "
        f"macro F1 {baseline:.3f}; the floor is {FLOOR_LIFT:.0%} of the way from it to 1, "
        "rounded down"
    )
    return Floor(metric, value, round(baseline, 4), why)


def served_model(task: Task, target: Profile) -> ServedModel:
    """The production version with the task's post-processing."""
    if task == Task.binary_classification:
        post = PostprocessConfig(threshold=0.5)
    elif task == Task.multiclass_classification:
        post = PostprocessConfig(top_k=min(3, target.distinct))
    else:
        post = PostprocessConfig()
    return ServedModel(version="production", postprocess=post)


# ----------------------------------------------------------------------------- all together


def infer(
    sample: pa.Table,
    *,
    target: str,
    name: str,
    source: SourceConfig,
    task: Task | None = None,
) -> Inference:
    """The dataset, features, floor and serving proposed for a sample of a file's rows."""
    if not len(sample):
        raise DataError(f"{source.path}: no rows to infer a schema from")
    keys = column_keys(sample.column_names)
    nulls = null_texts(source)  # the spellings keel's reader takes as missing
    profiles = [profile(sample, src, key, nulls) for src, key in keys.items()]
    tgt = find_target(profiles, target)
    task = task or infer_task(tgt)
    check_task(tgt, task)
    id_column = find_id(profiles, tgt.key)
    columns = {p.key: column_spec(p) for p in profiles}
    columns[tgt.key] = target_spec(tgt, task)
    if id_column:
        columns[id_column] = id_spec(next(p for p in profiles if p.key == id_column))
    fixed = {tgt.key: "the target", id_column: "the id"}
    choices = [
        FeatureChoice(p.key, None, fixed[p.key]) if p.key in fixed else choose_feature(p)
        for p in profiles
    ]
    dataset = DatasetConfig(
        name=name,
        task=task,
        target=tgt.key,
        id_column=id_column,
        timestamp_column=find_timestamp(profiles, tgt.key),
        columns=columns,
        slices=find_slices(profiles, [tgt.key, id_column]),
        source=source,
        split=SplitConfig(),
        validation=ValidationPolicy(),
    )
    return Inference(
        dataset=dataset,
        profiles=profiles,
        choices=choices,
        floor=quality_floor(task, tgt),
        served=served_model(task, tgt),
        notes=notes(tgt, dataset),
    )


def notes(target: Profile, dataset: DatasetConfig) -> list[str]:
    """What the sample could not settle and the user should check."""
    out = []
    if target.nulls:
        share = target.nulls / target.rows
        out.append(
            f"{target.nulls} sample rows ({share:.1%}) have no {target.key}: validation "
            f"quarantines them (the policy allows {dataset.validation.max_invalid_fraction:.0%})"
        )
    if not dataset.id_column:
        out.append("no id column: rows are split by a hash of all their values")
    return out

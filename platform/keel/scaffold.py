"""`keel init`'s output: the dataset, features and experiment configs for a user's own file.

The files are meant to be read and edited: each section says what it is, what was inferred
from how many rows and what to check; one column or feature per line in flow style, like the
hand-written configs in conf/. Rendering is deterministic (file order, no times), so running
`keel init` again on the same file gives byte-identical files. Existing files are never
overwritten unless asked (`--force`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from keel.config.schema import NULL_VALUES, ColumnType, Task, Transform
from keel.data.infer import (
    CATEGORY_MAX,
    MARGIN,
    ONE_HOT_MAX,
    SKEW,
    Inference,
    Profile,
    Role,
)
from keel.errors import ConfigError

WIDTH = 100  # the longest line written, like the code
KEY_COLUMN = 18  # entries start after here (keys longer than this push only their own line)
COMMENT_COLUMN = 36  # where the comments of top-level keys start
# a column's keys in the order people read them (type first, the file's name last)
COLUMN_ORDER = ("type", "format", "nullable", "min", "max", "allowed", "regex", "unique")
FEATURE_ORDER = ("transform", "input", "inputs", "parts", "cyclic")
GROUPS = ("dataset", "features", "experiment")
_PLAIN = re.compile(r"[A-Za-z_/][\w.\-/ ]*")  # text YAML reads back unchanged without quotes


@dataclass(frozen=True)
class Origin:
    """Where the sample came from, for the files' comments."""

    path: str  # as dataset.source.path holds it
    total_rows: int | None  # rows of all files when counted; None when only sampled


# what the files say about their own keys
COLUMNS_LEGEND = [
    "# One line per column, in the file's order:",
    "#   type      int | float | string | category | bool | timestamp",
    f"#   min/max   the range seen, widened by {MARGIN:.0%} on each side (not below 0 when nothing",
    "#             seen was) so new rows slightly outside it pass; edit to the true limits",
    "#   allowed   the categories seen; a new category is invalid until it is added here",
    "#   nullable  the sample had missing values (source.null_values, in any case, are missing)",
    "#   unique    checked across all rows (the id)",
    "#   source    the column's name in the file when it is not a valid key",
    "#   format    how a timestamp is written when it is not ISO 8601 (strptime codes)",
]

FEATURES_LEGEND = [
    "#   numbers     standardize; log1p first when never negative and skewed (skewness > "
    f"{SKEW:g});",
    "#               two-valued ones as they are; a missing number takes the training median",
    f"#   categories  one_hot up to {ONE_HOT_MAX} categories (a missing one becomes 'unknown'), "
    "else hashed",
    f"#   text        more than {CATEGORY_MAX} values: hashed when values repeat, else not used",
    "#   booleans    identity (1/0)",
    "#   timestamps  date_parts: the parts that vary in the sample, as sine and cosine of "
    "their cycle",
    "# Add ratios, differences, buckets or group statistics: see README.md, Features.",
]


# ----------------------------------------------------------------------------- YAML pieces


def scalar(value: Any) -> str:
    """One YAML scalar that reads back as `value`: quoted only when it must be (yes, no, null,
    numbers as text, ':' and other indicators), OmegaConf's ${...} escaped."""
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number(value)
    text = str(value)
    plain = "${" not in text and _PLAIN.fullmatch(text) and text == text.strip()
    if plain and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("${", "\\${").replace("'", "''") + "'"


def number(value: float) -> str:
    """Whole numbers without a point; others in positional notation (YAML 1.1 reads 1e-05 as
    text)."""
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(value, trim="-")


def atoms(value: Any) -> list[str]:
    """A flow value split where a line may break: after each comma. " ".join gives the line."""
    if isinstance(value, dict):
        items = [atoms(v) for v in value.values()]
        items = [[f"{scalar(k)}: {a[0]}", *a[1:]] for k, a in zip(value, items, strict=True)]
        return _enclose("{", items, "}")
    if isinstance(value, list | tuple):
        return _enclose("[", [atoms(v) for v in value], "]")
    return [scalar(value)]


def _enclose(opening: str, items: list[list[str]], closing: str) -> list[str]:
    if not items:
        return [opening + closing]
    out = [atom for item in items for atom in [*item[:-1], item[-1] + ","]]
    out[-1] = out[-1][:-1] + closing
    out[0] = opening + out[0]
    return out


def flow(value: Any) -> str:
    return " ".join(atoms(value))


def entry(key: str, value: Any, indent: int = 2, comment: str = "") -> list[str]:
    """`key: {flow}` wrapped at WIDTH with continuation lines under the first item, and a
    trailing comment when it fits (else a comment line above)."""
    head = f"{' ' * indent}{scalar(key)}:".ljust(KEY_COLUMN) + " "
    first, *rest = atoms(value)
    lines = [head + first]
    for atom in rest:
        if len(lines[-1]) + 1 + len(atom) > WIDTH:
            lines.append(" " * (len(head) + 1) + atom)
        else:
            lines[-1] += " " + atom
    if comment and len(lines[-1]) + 4 + len(comment) <= WIDTH:
        lines[-1] += f"  # {comment}"
    elif comment:
        lines.insert(0, f"{' ' * indent}# {comment}")
    return lines


def commented(line: str, comment: str) -> str:
    """A top-level line with its comment in the column the others use."""
    return f"{line.ljust(COMMENT_COLUMN)}   # {comment}"


def non_default(obj: Any, always: Sequence[str] = (), order: Sequence[str] = ()) -> dict:
    """A config dataclass's fields that differ from their defaults (nested ones likewise),
    in `order` first, then declaration order."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name in always or value != default:
            out[f.name] = non_default(value) if is_dataclass(value) else value
    first = [k for k in order if k in out]
    return {k: out[k] for k in [*first, *(k for k in out if k not in first)]}


def comment_block(text: str, prefix: str = "# ") -> list[str]:
    """Prose wrapped into comment lines."""
    lines, line = [], ""
    for word in text.split():
        if line and len(prefix) + len(line) + 1 + len(word) > WIDTH:
            lines.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, prefix + line] if line else lines


# ----------------------------------------------------------------------------- dataset


def describe_rows(inf: Inference, origin: Origin) -> str:
    """'the first 20,000 of 1,234,567 rows', 'all 420 rows', 'the first 20,000 rows'."""
    n = inf.rows
    if origin.total_rows == n:
        return f"all {n:,} rows"
    if origin.total_rows is None:
        return f"the first {n:,} rows (the files were not counted)"
    return f"the first {n:,} of {origin.total_rows:,} rows"


def seen(p: Profile) -> str:
    """What the sample held, for a column's comment."""
    parts = []
    if p.low is not None:
        parts.append(f"seen {p.low:g}..{p.high:g}")
    elif p.type in (ColumnType.category, ColumnType.string) and p.present:
        parts.append(f"{p.distinct:,} value{'s' if p.distinct != 1 else ''}")
    if p.nulls:
        parts.append(f"{p.nulls:,} null")
    return ", ".join(parts)


def column_comment(inf: Inference, p: Profile) -> str:
    role = inf.role(p.key)
    label = {Role.feature: "", Role.unused: "not a feature"}.get(role, role.value)
    return ", ".join(x for x in (label, seen(p)) if x)


def render_dataset(inf: Inference, origin: Origin) -> str:
    ds = inf.dataset
    lines = [
        f"# Dataset {ds.name!r}, written by `keel init` from {origin.path}.",
        *comment_block(
            f"Inferred from {describe_rows(inf, origin)}: read it and correct what a sample "
            f"cannot know. `keel validate experiment={ds.name}` checks every row against it."
        ),
        f"name: {scalar(ds.name)}",
        commented(f"task: {ds.task.value}", task_reason(inf)),
        f"target: {scalar(ds.target)}",
        commented(f"id_column: {scalar(ds.id_column)}", id_reason(inf)),
        f"timestamp_column: {scalar(ds.timestamp_column)}",
        commented(f"slices: {flow(list(ds.slices))}", "test metrics are also reported per value"),
        *COLUMNS_LEGEND,
        "columns:",
    ]
    for p in inf.profiles:
        spec = non_default(ds.columns[p.key], order=COLUMN_ORDER)
        lines += entry(p.key, spec, comment=column_comment(inf, p))
    every = [f.name for f in fields(ds.validation)]
    lines += [
        *source_lines(inf, origin),
        "# rows go to train/val/test by a hash of the id column (of the whole row without one)",
        f"split: {flow(non_default(ds.split, always=('train', 'val', 'test', 'seed')))}",
        "# a job fails above this share of invalid rows (on_invalid: fail refuses any)",
        f"validation: {flow(non_default(ds.validation, always=every))}",
    ]
    return "\n".join(lines) + "\n"


def task_reason(inf: Inference) -> str:
    p = inf.profile(inf.dataset.target)
    if inf.dataset.task == Task.regression:
        return f"{p.distinct:,} different numbers in the target"
    return f"{p.distinct} classes in the target"


def id_reason(inf: Inference) -> str:
    if inf.dataset.id_column:
        return "unique in the sample and named or written like an id"
    return "no unique, id-like column"


def source_lines(inf: Inference, origin: Origin) -> list[str]:
    src = inf.dataset.source
    lines = ["source:", f"  format: {src.format.value}", f"  path: {scalar(origin.path)}"]
    if list(src.null_values) != list(NULL_VALUES):
        lines.append(f"  null_values: {flow(list(src.null_values))}")
    return lines


# ----------------------------------------------------------------------------- features


def render_features(inf: Inference) -> str:
    name = inf.name
    lines = [
        f"# Features for {name!r}, written by `keel init`: output feature name -> how it is",
        f"# computed from a column of conf/dataset/{name}.yaml, by these rules:",
        *FEATURES_LEGEND,
        f"name: {scalar(name)}",
        "columns:",
    ]
    for c in inf.choices:
        if c.spec is not None:
            always = ("parts",) if c.spec.transform == Transform.date_parts else ()
            spec = non_default(c.spec, always=always, order=FEATURE_ORDER)
            lines += entry(c.column, spec, comment=c.reason)
    unused = [c for c in inf.choices if c.spec is None]
    if unused:
        lines.append("# Columns that are not features:")
        lines += [f"#   {c.column}: {c.reason}" for c in unused]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- experiment


def render_experiment(inf: Inference) -> str:
    name, floor, task = inf.name, inf.floor, inf.dataset.task
    served = non_default(inf.served, always=("version",))
    lines = [
        "# @package _global_",
        f"# Experiment {name!r}, written by `keel init`: the dataset and features of the same",
        "# name, the quality a version must reach to be promoted, and how it is served.",
        f"#   keel train experiment={name}      keel serve experiment={name}",
        "defaults:",
        f"  - override /dataset: {name}",
        f"  - override /features: {name}",
        "  - override /serve: default",
        "",
        "slo:",
        *comment_block(
            f"A version whose {floor.metric} on the test split is below the floor is never "
            f"promoted (unless forced). The floor is clearly above the trivial baseline: "
            f"{floor.reason}. Raise it once you know what the data allows.",
            prefix="  # ",
        ),
        f"  quality_floor: {flow({floor.metric: floor.value})}",
        "",
        "serve:",
        "  models:",
        *comment_block(serve_note(inf, task), prefix="    # "),
        *entry(name, served, indent=4),
    ]
    return "\n".join(lines) + "\n"


def serve_note(inf: Inference, task: Task) -> str:
    if task == Task.binary_classification:
        target = inf.dataset.columns[inf.dataset.target]
        positive = target.allowed[-1] if target.allowed else number(target.max)
        return (
            f"the production version; the prediction is P({inf.dataset.target} = {positive}) "
            f"(classes sorted, the last is positive) and the threshold makes it a class"
        )
    if task == Task.multiclass_classification:
        return "the production version; top_k returns the most likely classes"
    return "the production version; postprocess can clip_min, clip_max or round the value"


# ----------------------------------------------------------------------------- files


def paths(conf: Path, name: str) -> dict[str, Path]:
    """group -> <group>/<name>.yaml under the config tree (keel.config.conf_dir())."""
    return {g: conf / g / f"{name}.yaml" for g in GROUPS}


def render(inf: Inference, origin: Origin, conf: Path) -> dict[Path, str]:
    """The three files' paths (under the config tree `conf`) and text."""
    where = paths(conf, inf.name)
    return {
        where["dataset"]: render_dataset(inf, origin),
        where["features"]: render_features(inf),
        where["experiment"]: render_experiment(inf),
    }


def refuse_existing(files: Iterable[Path], force: bool = False) -> None:
    """An error naming the files that exist, unless force."""
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        many = len(existing) > 1
        raise ConfigError(
            f"{', '.join(existing)} already exist{'' if many else 's'}; "
            f"pass --force to overwrite {'them' if many else 'it'}"
        )


def write(files: dict[Path, str], force: bool = False) -> list[Path]:
    """Write every file, or none: an existing one is refused unless force."""
    refuse_existing(files, force)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def relative(files: Iterable[Path], root: Path) -> list[str]:
    """Paths under root relative to it (shorter to read), others as they are."""
    out = []
    for p in files:
        try:
            out.append(str(p.relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out

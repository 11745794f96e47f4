"""The config reference, read from the schema alone: every group and each of its keys with
type, default, allowed range and one-line description (`keel describe`).

Nothing is composed, so the defaults are the schema's: a group's YAML in conf/ may set others,
and `keel config` prints those.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import Field, dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

import yaml
from omegaconf import MISSING

from keel.errors import ConfigError

from .schema import KeelConfig, doc_of, is_duration, range_of

ANY_NAME, ANY_ITEM = "<name>", "[i]"  # in a key's path: any key of a map, any item of a list
DURATION = "duration like 30s, 5m, 1h"


@dataclass(frozen=True)
class Key:
    """One row of the reference, every part as text."""

    name: str  # dotted path: train.lr, serve.models.<name>.version
    type: str
    default: str
    range: str
    doc: str


@dataclass(frozen=True)
class Group:
    name: str  # dotted path: train, serve.batching, serve.models.<name>.canary
    schema: type  # its dataclass
    key: Key  # the row of the key that holds it
    under: str  # its keys' prefix: serve.models.<name> for the map serve.models


def groups() -> dict[str, Group]:
    """Every group under the root config, depth first in declaration order."""
    found: dict[str, Group] = {}

    def walk(schema: type, prefix: str) -> None:
        for f, hint in _fields(schema):
            inner, entries = _group_in(hint)
            if inner is not None:
                name = _join(prefix, f.name)
                found[name] = Group(name, inner, _key(prefix, f, hint), name + entries)
                walk(inner, name + entries)

    walk(KeelConfig, "")
    return found


def keys(group: Group) -> list[Key]:
    """The group's own keys; a key holding a group is one row (`keel describe` that group)."""
    return [_key(group.under, f, hint) for f, hint in _fields(group.schema)]


def overview() -> list[Key]:
    """A row per group, then the root's keys that are no group (seed)."""
    own = [_key("", f, hint) for f, hint in _fields(KeelConfig) if _group_in(hint)[0] is None]
    return [g.key for g in groups().values()] + own


def find(name: str) -> Group:
    """The group a dotted name picks; any key of a map stands for its <name>
    (serve.models.churn.canary is serve.models.<name>.canary)."""
    known = groups()
    for group in known.values():
        if re.fullmatch(re.escape(group.name).replace(re.escape(ANY_NAME), r"[^.]+"), name):
            return group
    raise ConfigError(f"unknown config group {name!r}; known: {', '.join(known)}")


def _fields(schema: type) -> list[tuple[Field, Any]]:
    hints = typing.get_type_hints(schema)  # the schema's annotations are strings
    return [(f, hints[f.name]) for f in fields(schema)]


def _group_in(hint: Any) -> tuple[type | None, str]:
    """The group a key holds, and how its entries extend the path: '' for the group itself,
    '.<name>' for a map of groups, '[i]' for a list of them."""
    hint = _without_null(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        return hint, ""
    if typing.get_origin(hint) is dict and is_dataclass(args[1]):
        return args[1], f".{ANY_NAME}"
    if typing.get_origin(hint) is list and is_dataclass(args[0]):
        return args[0], ANY_ITEM
    return None, ""


def _without_null(hint: Any) -> Any:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in typing.get_args(hint) if a is not types.NoneType]
        if len(rest) == 1:
            return rest[0]
    return hint


def _key(prefix: str, f: Field, hint: Any) -> Key:
    return Key(_join(prefix, f.name), _type(hint), _default(f, hint), _range(f), doc_of(f))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type(hint: Any) -> str:
    """As YAML sees it: null for None, an Enum's choices, 'group' for a dataclass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type(a) for a in args)
    if origin is list:
        return f"list[{_type(args[0])}]"
    if origin is dict:
        return f"dict[{_type(args[0])}, {_type(args[1])}]"
    if hint is types.NoneType:
        return "null"
    if hint is Any:
        return "any"
    if is_dataclass(hint):
        return "group"
    if issubclass(hint, Enum):
        return " | ".join(str(member.value) for member in hint)
    return hint.__name__


def _default(f: Field, hint: Any) -> str:
    """As YAML would write it; blank for a group (its keys have theirs), 'required' for a key
    the config must give."""
    value = f.default_factory() if f.default is NO_DEFAULT else f.default
    if value is not None and is_dataclass(_without_null(hint)):
        return ""
    if isinstance(value, str) and value == MISSING:
        return "required"
    return _yaml(value)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and yaml.safe_load(value) != value:  # '', 'null', '1.0': quoted
        return f"'{value}'"
    return str(value)


def _range(f: Field) -> str:
    if is_duration(f):
        return DURATION
    bounds = range_of(f)
    if bounds is None:
        return ""
    lo, hi, lo_open = bounds
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo}, {hi}]"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"<= {hi}"

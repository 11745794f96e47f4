"""keel's declarative surface: typed config groups composed with Hydra."""

from .compose import (
    absolute,
    compose_raw,
    conf_dir,
    from_dict,
    group_option,
    load,
    project_root,
    to_dict,
    to_yaml,
)
from .schema import KeelConfig

__all__ = [
    "KeelConfig",
    "absolute",
    "compose_raw",
    "conf_dir",
    "from_dict",
    "group_option",
    "load",
    "project_root",
    "to_dict",
    "to_yaml",
]

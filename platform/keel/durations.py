"""Durations as configs and flags write them ('90s', '10m', '6h', '1d', '2w'): one parser,
below the config (which checks every duration field, see schema.duration) and monitoring
(log windows, `keel monitor --every`)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """'90s', '10m', '6h', '1d', '2w' -> seconds; ValueError names the accepted forms."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration: use a positive number and s, m, h, d or w")
    return float(match[1]) * _SECONDS[match[2]]

"""Request models generated from a dataset's column schema, and readable validation errors.

A request is `{"instances": [{column: value, ...}, ...]}`. Each column gets its declared type
(strict: "30" is not an int, but 30.0 is, as JSON Schema says), range, allowed values, regex
and nullability; NaN and infinity are refused; unknown fields are refused; the feature inputs
are required. The same models produce the OpenAPI document, so the published contract is the
one that is enforced (the API fuzz test sends bodies generated from it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from keel.config.schema import ColumnSpec, ColumnType


def _label(value: Any) -> bool | int | float | str:
    """A ground-truth label: a finite number, a boolean or a short string."""
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    raise ValueError("a label is a finite number, a boolean or a string of 1-256 characters")


def _json_integer(value: Any) -> Any:
    """JSON has one number type: 30.0 is the integer 30 (true and "30" are still refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _iso_timestamp(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)") from None
    return value


def _timestamp_as(format: str) -> Callable[[str], str]:
    """A column with a declared strptime format takes times as its file writes them, or ISO
    8601 (what keel's own clients send), the same two spellings validation reads. Formatted
    times are passed on in ISO 8601, so the features and the prediction log, which read ISO
    times, see one spelling."""

    def check(value: str) -> str:
        try:
            return datetime.strptime(value, format).isoformat()
        except ValueError:
            pass
        try:
            return _iso_timestamp(value)
        except ValueError:
            raise ValueError(
                f"not a timestamp as {format!r} or ISO 8601 (e.g. 2024-05-01T12:00:00Z)"
            ) from None

    return check


def _column_type(spec: ColumnSpec) -> Any:
    bounds = {"ge": spec.min, "le": spec.max}
    kind = ColumnType(spec.type)
    if kind == ColumnType.int:
        return Annotated[StrictInt, Field(**bounds), BeforeValidator(_json_integer)]
    if kind == ColumnType.float:
        return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds)]  # ints welcome
    if kind == ColumnType.bool:
        return StrictBool
    if kind == ColumnType.timestamp and spec.format:
        return Annotated[
            StrictStr,
            AfterValidator(_timestamp_as(spec.format)),
            # no "format": "date-time" here, as that would refuse the file's own spelling
            WithJsonSchema({"type": "string", "x-strptime": spec.format}),
        ]
    if kind == ColumnType.timestamp:
        return Annotated[
            StrictStr,
            AfterValidator(_iso_timestamp),
            WithJsonSchema({"type": "string", "format": "date-time"}),
        ]
    if spec.allowed:
        return Literal[tuple(spec.allowed)]
    return Annotated[StrictStr, Field(pattern=spec.regex)] if spec.regex else StrictStr


def instance_model(name: str, columns: dict[str, ColumnSpec], required: set[str]) -> type:
    """One instance: required columns must be present; nullable ones may be null or absent."""
    fields: dict[str, Any] = {}
    for col, spec in columns.items():
        kind = _column_type(spec)
        if spec.nullable:
            kind = kind | None
        default = ... if col in required and not spec.nullable else None
        fields[col] = (kind, Field(default, description=spec.description or None))
    return create_model(
        f"{_camel(name)}Instance",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def request_model(name: str, instance: type, max_rows: int) -> type:
    return create_model(
        f"{_camel(name)}PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        instances=(list[instance], Field(..., min_length=1, max_length=max_rows)),
        explain=(
            StrictBool,
            Field(False, description="also explain each prediction (as POST ...:explain does)"),
        ),
    )


class Feedback(BaseModel):
    """A ground-truth label for one served instance, joined to the prediction log later."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\w.:-]+$")]
    label: Annotated[
        bool | int | float | str,
        PlainValidator(_label),
        WithJsonSchema({"type": ["number", "boolean", "string"], "minLength": 1, "maxLength": 256}),
    ]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feedback: list[Feedback] = Field(..., min_length=1, max_length=10_000)


def errors(error: ValidationError | list[dict]) -> list[str]:
    """Pydantic errors as 'instances[3].age: Input should be ... (got -5)' lines."""
    errors = error.errors(include_url=False) if isinstance(error, ValidationError) else error
    lines = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        msg = e.get("msg", "invalid")
        if e.get("type") not in ("missing", "extra_forbidden") and "input" in e:
            msg += f" (got {e['input']!r})"[:160]
        if e.get("type") == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        lines.append(f"{path or 'body'}: {msg}")
    return lines


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))

"""Request models generated from the churn dataset's columns, and readable errors."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from keel.config.schema import ColumnSpec, ColumnType
from keel.serving.schema import (
    Feedback,
    FeedbackRequest,
    instance_model,
    request_model,
)
from keel.serving.schema import errors as lines_of

MAX_ROWS = 3

GOOD = {
    "customer_id": "C12345678",
    "signup_ts": "2024-05-01T12:00:00Z",
    "age": 30,
    "tenure_months": 12,
    "monthly_charges": 70.5,
    "total_charges": 800.0,
    "contract": "one-year",
    "region": "north",
    "payment_method": "card",
    "internet_service": "dsl",
    "support_calls": 1,
}


@pytest.fixture(scope="module")
def churn():
    """(columns a request may carry, the required feature inputs, target name)."""
    from keel.config import load
    from keel.features import FeaturePipeline

    cfg = load([])
    columns = {c: s for c, s in cfg.dataset.columns.items() if c != cfg.dataset.target}
    required = set(FeaturePipeline.from_config(cfg.features).input_columns)
    return columns, required, cfg.dataset.target


@pytest.fixture(scope="module")
def instance(churn):
    columns, required, _ = churn
    return instance_model("churn", columns, required)


@pytest.fixture(scope="module")
def request_(instance):
    return request_model("churn", instance, MAX_ROWS)


def errors(model, body) -> list[str]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    return lines_of(e.value)


def bad(instance, **changes) -> list[str]:
    return errors(instance, {**GOOD, **changes})


def test_the_fixture_matches_the_churn_config(churn):
    columns, required, target = churn
    assert set(GOOD) == set(columns)
    assert target == "churned" and target not in columns
    assert "customer_id" not in required  # the id is not a feature input
    assert {"age", "signup_ts", "total_charges"} <= required


def test_a_valid_instance_and_request_pass(instance, request_):
    row = instance.model_validate(GOOD)
    assert row.model_dump() == GOOD
    req = request_.model_validate({"instances": [GOOD, GOOD]})
    assert [i.model_dump() for i in req.instances] == [GOOD, GOOD]
    assert type(req).__name__ == "ChurnPredictRequest"
    assert type(row).__name__ == "ChurnInstance"


# ----------------------------------------------------------------------------- types


@pytest.mark.parametrize("value", ["30", True, 30.5, float("inf"), None, [30]])
def test_int_columns_are_strict(instance, value):
    lines = bad(instance, age=value)
    assert len(lines) == 1
    assert lines[0].startswith("age: Input should be a valid integer")


def test_a_whole_json_number_is_an_integer_as_the_published_schema_says(instance):
    """JSON Schema's `integer` admits 30.0 (JSON has one number type), and the OpenAPI
    document is the contract: clients that cannot tell 30.0 from 30 are served."""
    row = instance.model_validate({**GOOD, "age": 30.0})
    assert row.age == 30 and type(row.age) is int
    assert bad(instance, age=3.0) == ["age: Input should be greater than or equal to 18 (got 3)"]


def test_float_columns_accept_ints_and_keep_them(instance):
    row = instance.model_validate({**GOOD, "monthly_charges": 70})
    assert row.monthly_charges == 70


@pytest.mark.parametrize("value", ["70.5", True, None])
def test_float_columns_refuse_strings_bools_and_null(instance, value):
    lines = bad(instance, monthly_charges=value)
    assert lines and all(line.startswith("monthly_charges") for line in lines)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_for_bounded_floats(instance, value):
    assert bad(instance, monthly_charges=value)[0].startswith("monthly_charges: ")
    assert bad(instance, total_charges=value)[0].startswith("total_charges: ")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_for_unbounded_floats(value):
    model = instance_model(
        "t",
        {
            "x": ColumnSpec(type=ColumnType.float),
            "y": ColumnSpec(type=ColumnType.float, nullable=True),
        },
        {"x", "y"},
    )
    assert model.model_validate({"x": 1.5, "y": -2}).model_dump() == {"x": 1.5, "y": -2}
    for col in ("x", "y"):
        lines = errors(model, {"x": 1.0, "y": 1.0, col: value})
        assert lines == [f"{col}: Input should be a finite number (got {value!r})"]


def test_bool_columns_are_strict():
    model = instance_model("t", {"flag": ColumnSpec(type=ColumnType.bool)}, {"flag"})
    assert model.model_validate({"flag": False}).flag is False
    for value in ("true", 1, None):
        assert errors(model, {"flag": value})[0].startswith("flag: Input should be a valid boolean")


def test_min_and_max(instance):
    assert instance.model_validate({**GOOD, "age": 18, "support_calls": 50}).age == 18
    assert bad(instance, age=-5) == ["age: Input should be greater than or equal to 18 (got -5)"]
    assert bad(instance, age=101) == ["age: Input should be less than or equal to 100 (got 101)"]
    assert bad(instance, monthly_charges=4.99)[0].startswith(
        "monthly_charges: Input should be greater than or equal to 5"
    )
    assert bad(instance, total_charges=60000.5)[0].startswith(
        "total_charges: Input should be less than or equal to 60000"
    )


def test_allowed_values(instance):
    assert instance.model_validate({**GOOD, "contract": "two-year"}).contract == "two-year"
    lines = bad(instance, contract="weekly")
    assert lines == [
        "contract: Input should be 'month-to-month', 'one-year' or 'two-year' (got 'weekly')"
    ]
    assert bad(instance, region="North")[0].startswith("region: Input should be")
    assert bad(instance, region=1)[0].startswith("region: Input should be")


@pytest.mark.parametrize("value", ["C1234567", "C123456789", "X12345678", "../x", "c12345678"])
def test_the_id_column_must_match_its_regex(instance, value):
    lines = bad(instance, customer_id=value)
    assert lines == [f"customer_id: String should match pattern '^C\\d{{8}}$' (got {value!r})"]


# ----------------------------------------------------------------------------- presence


def test_nullable_columns_accept_null_and_may_be_omitted(instance):
    row = instance.model_validate({**GOOD, "total_charges": None, "payment_method": None})
    assert row.total_charges is None and row.payment_method is None
    omitted = {k: v for k, v in GOOD.items() if k not in ("total_charges", "payment_method")}
    row = instance.model_validate(omitted)
    assert row.total_charges is None and row.payment_method is None


def test_optional_non_nullable_column_may_be_omitted_but_not_null(instance):
    # customer_id is not a feature input: it may be left out, but a given value is checked
    row = instance.model_validate({k: v for k, v in GOOD.items() if k != "customer_id"})
    assert row.customer_id is None
    assert bad(instance, customer_id=None) == [
        "customer_id: Input should be a valid string (got None)"
    ]


def test_missing_required_columns_are_named(instance):
    body = {k: v for k, v in GOOD.items() if k not in ("age", "region", "signup_ts")}
    assert sorted(errors(instance, body)) == [
        "age: Field required",
        "region: Field required",
        "signup_ts: Field required",
    ]


def test_every_required_non_nullable_column_is_required(churn, instance):
    columns, required, _ = churn
    must = {c for c in required if not columns[c].nullable}
    lines = errors(instance, {})
    assert sorted(lines) == sorted(f"{c}: Field required" for c in must)


def test_extra_fields_are_refused(instance, request_):
    assert bad(instance, foo=1) == ["foo: unknown field: remove it or check its spelling"]
    lines = errors(request_, {"instances": [GOOD], "debug": True})
    assert lines == ["debug: unknown field: remove it or check its spelling"]


# ----------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00+02:00", "2024-05-01", "2024-05-01 12:00:00.123"],
)
def test_iso_timestamps_pass(instance, value):
    assert instance.model_validate({**GOOD, "signup_ts": value}).signup_ts == value


@pytest.mark.parametrize("value", ["yesterday", "05/01/2024", "2024-13-01", ""])
def test_non_iso_timestamps_are_refused(instance, value):
    lines = bad(instance, signup_ts=value)
    assert lines == [
        "signup_ts: Value error, not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z) "
        f"(got {value!r})"
    ]


def test_timestamps_must_be_strings(instance):
    assert bad(instance, signup_ts=1714564800)[0].startswith(
        "signup_ts: Input should be a valid string"
    )


# ----------------------------------------------------------------------------- requests


def test_empty_instances_are_refused(request_):
    lines = errors(request_, {"instances": []})
    assert len(lines) == 1 and lines[0].startswith("instances: List should have at least 1 item")
    assert errors(request_, {}) == ["instances: Field required"]


def test_too_many_rows_are_refused(request_):
    request_.model_validate({"instances": [GOOD] * MAX_ROWS})
    lines = errors(request_, {"instances": [GOOD] * (MAX_ROWS + 1)})
    assert len(lines) == 1
    assert lines[0].startswith(f"instances: List should have at most {MAX_ROWS} items")


def test_errors_name_the_instance_and_field(request_):
    body = {"instances": [GOOD, {**GOOD, "age": -5, "foo": "bar"}]}
    assert errors(request_, body) == [
        "instances[1].age: Input should be greater than or equal to 18 (got -5)",
        "instances[1].foo: unknown field: remove it or check its spelling",
    ]
    body = {"instances": [{k: v for k, v in GOOD.items() if k != "age"}]}
    assert errors(request_, body) == ["instances[0].age: Field required"]


def test_fastapi_style_errors_drop_body_and_truncate_long_inputs():
    lines = lines_of(
        [
            {"type": "int_type", "loc": ("body", "instances", 2, "age"), "msg": "bad", "input": 1},
            {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None},
            {"type": "string_type", "loc": ("x",), "msg": "m", "input": "y" * 500},
        ]
    )
    assert lines[0] == "instances[2].age: bad (got 1)"
    assert lines[1] == "body: Field required"
    assert lines[2].startswith("x: m (got 'yyy")
    assert len(lines[2]) < 200


# ----------------------------------------------------------------------------- feedback


@pytest.mark.parametrize("label", [1, 0.25, True])
def test_feedback_accepts_request_id_and_label(label):
    fb = Feedback.model_validate({"request_id": "3f2a9c1e-01:a.b", "label": label})
    assert fb.request_id == "3f2a9c1e-01:a.b"
    assert fb.label == label and type(fb.label) is type(label)
    req = FeedbackRequest.model_validate({"feedback": [{"request_id": "abc", "label": label}]})
    assert req.feedback[0].label == label


def test_feedback_accepts_a_string_label():
    fb = Feedback.model_validate({"request_id": "abc", "label": "churns"})
    assert fb.label == "churns"


@pytest.mark.parametrize("request_id", ["../x", "a/b", "", "a b", "x" * 129, 12])
def test_feedback_refuses_bad_request_ids(request_id):
    lines = errors(Feedback, {"request_id": request_id, "label": 1})
    assert len(lines) == 1 and lines[0].startswith("request_id: ")


def test_feedback_refuses_extra_keys_and_missing_label():
    assert errors(Feedback, {"request_id": "a", "label": 1, "model": "churn"}) == [
        "model: unknown field: remove it or check its spelling"
    ]
    assert errors(Feedback, {"request_id": "a"}) == ["label: Field required"]
    assert errors(Feedback, {"request_id": "a", "label": math.nan}) == [
        "label: Value error, a label is a finite number, a boolean or a string of 1-256 "
        "characters (got nan)"
    ]


def test_feedback_request_refuses_empty_lists_and_names_the_item():
    assert errors(FeedbackRequest, {"feedback": []})[0].startswith("feedback: List should have")
    lines = errors(
        FeedbackRequest,
        {"feedback": [{"request_id": "a", "label": 1}, {"request_id": "../x", "label": 1}]},
    )
    assert len(lines) == 1 and lines[0].startswith("feedback[1].request_id: ")
    assert errors(FeedbackRequest, {"feedback": [{"request_id": "a", "label": 1}], "x": 1}) == [
        "x: unknown field: remove it or check its spelling"
    ]


# ----------------------------------------------------------------------------- JSON schema


def test_request_json_schema_is_the_enforced_contract(request_, churn):
    columns, required, target = churn
    schema = request_.model_json_schema()
    assert schema["additionalProperties"] is False
    items = schema["properties"]["instances"]
    assert (items["minItems"], items["maxItems"]) == (1, MAX_ROWS)
    inst = schema["$defs"]["ChurnInstance"]
    props = inst["properties"]
    assert inst["additionalProperties"] is False
    assert target not in props
    assert set(props) == set(columns)
    assert props["age"]["type"] == "integer"
    assert props["age"]["minimum"] == 18 and props["age"]["maximum"] == 100
    assert props["contract"]["enum"] == ["month-to-month", "one-year", "two-year"]
    assert props["customer_id"]["pattern"] == r"^C\d{8}$"
    assert set(inst["required"]) == {c for c in required if not columns[c].nullable}
    assert "total_charges" not in inst["required"]


def test_float_bounds_are_published_as_minimum_and_maximum(request_):
    props = request_.model_json_schema()["$defs"]["ChurnInstance"]["properties"]
    assert props["monthly_charges"].get("minimum") == 5
    assert props["monthly_charges"].get("maximum") == 500


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        (1, 0),
        ({"instances": [{"age": 40}]}, 3),  # a predict body
        ({"feedback": [{"request_id": "a", "label": [1]}]}, 4),
        ([[[]]], 3),
        ({"a": 1, "b": {"c": {"d": []}}}, 4),  # the deepest branch counts
    ],
)
def test_a_bodys_depth_is_counted_without_recursion(document, depth):
    from keel.serving.ingress import MAX_DEPTH, _depth

    assert _depth(document) == depth
    deep: list = []
    for _ in range(5 * MAX_DEPTH):  # what recursive code would need many frames for
        deep = [deep]
    assert _depth(deep) == MAX_DEPTH + 1  # counting stops once past the limit

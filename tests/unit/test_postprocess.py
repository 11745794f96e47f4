"""Postprocessor: thresholds and class names, top-k, clip/round and business rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keel.config.schema import PostprocessConfig, RuleAction, RuleSpec, Task
from keel.errors import ConfigError
from keel.models import Head
from keel.serving.postprocess import Postprocessor

BINARY = Head(Task.binary_classification.value, labels=[0, 1])
MULTI = Head(Task.multiclass_classification.value, labels=["a", "b", "c"])
REGRESSION = Head(Task.regression.value, mean=100.0, scale=10.0)


def post(head: Head, **spec) -> Postprocessor:
    return Postprocessor(PostprocessConfig(**spec), head)


# ----------------------------------------------------------------------------- binary


def test_binary_default_threshold_and_head_labels():
    p = post(BINARY)
    assert p.names == [0, 1]
    cols = p.columns(np.array([0.1, 0.5, 0.49, 0.9]))
    assert cols["label"].tolist() == [0, 1, 0, 1]  # positive when P >= 0.5
    assert cols["rules"] == [[], [], [], []]
    assert set(cols) == {"label", "rules"}


def test_binary_threshold_and_custom_labels():
    p = post(BINARY, threshold=0.8, labels=["stays", "churns"])
    cols = p.columns(np.array([0.79, 0.8, 0.95, 0.0]))
    assert cols["label"].tolist() == ["stays", "churns", "churns", "stays"]


def test_binary_string_head_labels_are_the_default_names():
    head = Head(Task.binary_classification.value, labels=["no", "yes"])
    assert post(head).columns(np.array([0.2, 0.7]))["label"].tolist() == ["no", "yes"]


@pytest.mark.parametrize("labels", [["only_one"], ["a", "b", "c"]])
def test_binary_wrong_number_of_labels_names_the_key(labels):
    with pytest.raises(ConfigError, match=r"serve\.models\.churn\.postprocess\.labels") as e:
        Postprocessor(PostprocessConfig(labels=labels), BINARY, "serve.models.churn.postprocess")
    assert f"{len(labels)} names" in str(e.value)
    assert "2 classes" in str(e.value)


def test_multiclass_wrong_number_of_labels_is_refused():
    with pytest.raises(ConfigError, match=r"postprocess\.labels: 2 names .* 3 classes"):
        post(MULTI, labels=["x", "y"])


# ----------------------------------------------------------------------------- multiclass


def test_multiclass_label_and_top_k_order_and_probabilities():
    p = post(MULTI, top_k=2)
    raw = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2], [0.1, 0.15, 0.75]])
    cols = p.columns(raw)
    assert cols["label"].tolist() == ["b", "a", "c"]
    assert cols["top_k"] == [
        [{"label": "b", "probability": 0.5}, {"label": "c", "probability": 0.3}],
        [{"label": "a", "probability": 0.7}, {"label": "c", "probability": 0.2}],
        [{"label": "c", "probability": 0.75}, {"label": "b", "probability": 0.15}],
    ]


def test_multiclass_custom_labels_rename_classes_in_order():
    p = post(MULTI, labels=["low", "mid", "high"], top_k=3)
    cols = p.columns(np.array([[0.1, 0.3, 0.6]]))
    assert cols["label"].tolist() == ["high"]
    assert [t["label"] for t in cols["top_k"][0]] == ["high", "mid", "low"]
    assert [t["probability"] for t in cols["top_k"][0]] == pytest.approx([0.6, 0.3, 0.1])


def test_multiclass_without_top_k_has_no_top_k_column():
    cols = post(MULTI).columns(np.array([[0.1, 0.3, 0.6]]))
    assert "top_k" not in cols
    assert cols["label"].tolist() == ["c"]


def test_top_k_above_the_number_of_classes_is_refused():
    with pytest.raises(ConfigError, match=r"postprocess\.top_k=4 but the model has 3 classes"):
        post(MULTI, top_k=4)


# ----------------------------------------------------------------------------- regression


def test_regression_passes_values_through_by_default():
    cols = post(REGRESSION).columns(np.array([1.234, -5.0, 99.9]))
    assert cols["value"].tolist() == [1.234, -5.0, 99.9]
    assert "label" not in cols


def test_regression_clip_and_round():
    p = post(REGRESSION, clip_min=0.0, clip_max=10.0, round=1)
    cols = p.columns(np.array([-3.0, 4.26, 12.5, 7.04]))
    assert cols["value"].tolist() == [0.0, 4.3, 10.0, 7.0]


def test_regression_one_sided_clip_and_round_to_integer():
    assert post(REGRESSION, clip_min=5.0).columns(np.array([1.0, 8.0]))["value"].tolist() == [
        5.0,
        8.0,
    ]
    assert post(REGRESSION, clip_max=5.0).columns(np.array([1.0, 8.0]))["value"].tolist() == [
        1.0,
        5.0,
    ]
    assert post(REGRESSION, round=0).columns(np.array([1.6, 2.4]))["value"].tolist() == [2.0, 2.0]


def test_regression_set_rule_is_a_price_floor():
    floor = RuleSpec(name="price_floor", below=100.0, action=RuleAction.set, value=100.0)
    p = post(REGRESSION, round=2, rules=[floor])
    cols = p.columns(np.array([50.0, 99.999, 100.0, 250.456]))
    assert cols["value"].tolist() == [100.0, 100.0, 100.0, 250.46]
    # the rule is named where it fired (tested on the raw value, not the floored one)
    assert cols["rules"] == [["price_floor"], ["price_floor"], [], []]


def test_regression_set_rule_happens_before_clip():
    cap = RuleSpec(name="cap", above=1000.0, action=RuleAction.set, value=5000.0)
    cols = post(REGRESSION, clip_max=2000.0, rules=[cap]).columns(np.array([500.0, 1500.0]))
    assert cols["value"].tolist() == [500.0, 2000.0]  # set to 5000, then clipped
    assert cols["rules"] == [[], ["cap"]]


# ----------------------------------------------------------------------------- rules


def test_flag_rules_between_below_above_are_listed_in_order():
    rules = [
        RuleSpec(name="review", between=[0.4, 0.6]),
        RuleSpec(name="safe", below=0.1),
        RuleSpec(name="urgent", above=0.9),
        RuleSpec(name="high", above=0.5),
    ]
    p = post(BINARY, labels=["stays", "churns"], rules=rules)
    cols = p.columns(np.array([0.05, 0.1, 0.4, 0.6, 0.61, 0.95]))
    assert cols["rules"] == [
        ["safe"],
        [],  # below is strict
        ["review"],  # between is inclusive at both ends
        ["review", "high"],
        ["high"],
        ["urgent", "high"],
    ]
    # flag rules never change the label
    assert cols["label"].tolist() == ["stays", "stays", "stays", "churns", "churns", "churns"]


def test_multiclass_rules_test_the_top_class_probability():
    p = post(MULTI, rules=[RuleSpec(name="unsure", below=0.5)])
    cols = p.columns(np.array([[0.4, 0.35, 0.25], [0.1, 0.8, 0.1]]))
    assert cols["rules"] == [["unsure"], []]


def test_regression_flag_rule_does_not_change_the_value():
    p = post(REGRESSION, rules=[RuleSpec(name="cheap", below=100.0)])
    cols = p.columns(np.array([50.0, 150.0]))
    assert cols["value"].tolist() == [50.0, 150.0]
    assert cols["rules"] == [["cheap"], []]


@pytest.mark.parametrize("head", [BINARY, MULTI], ids=["binary", "multiclass"])
def test_set_rule_is_refused_for_classification(head):
    rule = RuleSpec(name="force", above=0.9, action=RuleAction.set, value=1.0)
    with pytest.raises(ConfigError, match=r"serve\.models\.m\.postprocess\.rules\.0 \(force\)"):
        Postprocessor(PostprocessConfig(rules=[rule]), head, "serve.models.m.postprocess")


# ----------------------------------------------------------------------------- keys per task


@pytest.mark.parametrize(
    ("head", "key", "value"),
    [
        (REGRESSION, "threshold", 0.5),
        (REGRESSION, "labels", ["a"]),
        (REGRESSION, "top_k", 1),
        (BINARY, "clip_min", 0.0),
        (BINARY, "clip_max", 1.0),
        (BINARY, "round", 2),
        (BINARY, "top_k", 1),
        (MULTI, "threshold", 0.5),
        (MULTI, "clip_max", 1.0),
        (MULTI, "round", 1),
    ],
)
def test_keys_that_do_not_apply_to_the_task_are_refused(head, key, value):
    where = "serve.models.m.postprocess"
    with pytest.raises(ConfigError) as e:
        Postprocessor(PostprocessConfig(**{key: value}), head, where)
    message = str(e.value)
    assert message.startswith(f"{where}.{key} does not apply")
    assert head.task in message


# ----------------------------------------------------------------------------- rows


def _assert_plain(value):
    """Only built-in JSON types, all the way down (no numpy scalars or arrays)."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            _assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


@pytest.mark.parametrize(
    ("head", "spec", "raw"),
    [
        (
            BINARY,
            {"threshold": 0.3, "rules": [RuleSpec(name="review", between=[0.2, 0.4])]},
            np.array([0.1, 0.35, 0.9], np.float32),
        ),
        (
            MULTI,
            {"top_k": 2, "labels": ["x", "y", "z"], "rules": [RuleSpec(name="u", below=0.5)]},
            np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], np.float32),
        ),
        (
            REGRESSION,
            {
                "round": 1,
                "clip_max": 500.0,
                "rules": [RuleSpec(name="floor", below=10.0, action=RuleAction.set, value=10.0)],
            },
            np.array([3.0, 42.25, 900.0], np.float32),
        ),
    ],
    ids=["binary", "multiclass", "regression"],
)
def test_rows_are_plain_json_and_equal_columns(head, spec, raw):
    p = post(head, **spec)
    rows = p.rows(raw)
    cols = p.columns(raw)
    assert len(rows) == len(raw)
    _assert_plain(rows)
    assert json.loads(json.dumps(rows)) == rows
    for i, row in enumerate(rows):
        assert set(row) == set(cols)
        for key, column in cols.items():
            assert row[key] == column[i]


def test_rows_values_for_each_task():
    assert post(BINARY, labels=["stays", "churns"]).rows(np.array([0.7])) == [
        {"label": "churns", "rules": []}
    ]
    assert post(MULTI, top_k=1).rows(np.array([[0.2, 0.5, 0.3]])) == [
        {"label": "b", "top_k": [{"label": "b", "probability": 0.5}], "rules": []}
    ]
    assert post(REGRESSION, round=0).rows(np.array([41.6])) == [{"value": 42.0, "rules": []}]


def test_rows_of_an_empty_batch():
    assert post(BINARY).rows(np.array([])) == []
    assert post(REGRESSION).rows(np.zeros(0)) == []

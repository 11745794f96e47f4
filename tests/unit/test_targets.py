"""Target encoding (keel/targets.py): the one rule by which training, monitoring and
retraining turn labels into indexes, and what each makes of a label that is no class."""

from __future__ import annotations

import numpy as np
import pytest

from keel import targets
from keel.config.schema import Task
from keel.targets import Unknown

SPECIES = ["Adelie", "Chinstrap", "Gentoo"]
MULTI = Task.multiclass_classification


# ----------------------------------------------------------------------------- class_index


def test_class_index_matches_text_and_numbers_and_marks_the_rest_nan():
    got = targets.class_index(["Gentoo", "Adelie", "gentoo", None, 3], SPECIES)
    assert got[:2].tolist() == [2.0, 0.0]
    assert np.isnan(got[2:]).all()  # case matters; None and numbers are no species


@pytest.mark.parametrize("value", [2, 2.0, "2", np.int64(2), np.float32(2.0)])
def test_class_index_int_classes_match_by_value(value):
    assert targets.class_index([value], [0, 1, 2]).tolist() == [2.0]


@pytest.mark.parametrize(("value", "index"), [(2, 2.0), ("2", 2.0), (np.int64(2), 2.0)])
def test_class_index_text_classes_match_the_same_text(value, index):
    assert targets.class_index([value], ["0", "1", "2"]).tolist() == [index]
    # a float is no text: "2.0" names no class "2" (as parse_label has always read it)
    assert np.isnan(targets.class_index([2.0, "2.0"], ["0", "1", "2"])).all()


def test_class_index_bools_are_no_numbers():
    assert targets.class_index([True, False], [False, True]).tolist() == [1.0, 0.0]
    assert targets.class_index([np.bool_(True)], [False, True]).tolist() == [1.0]
    assert np.isnan(targets.class_index([True, 1], [0, 2])).tolist() == [True, True]
    assert np.isnan(targets.class_index([1], [False, True])).all()


def test_class_index_of_nothing_and_of_huge_numbers():
    assert targets.class_index([], ["a"]).shape == (0,)
    assert np.isnan(targets.class_index([10**400], [0, 1])).all()


def test_each_caller_names_what_an_unknown_label_becomes():
    labels = ["Gentoo", "Unicorn", "Adelie"]
    nan = targets.encode(labels, MULTI, SPECIES, Unknown.nan)
    assert nan[[0, 2]].tolist() == [2.0, 0.0] and np.isnan(nan[1])
    assert targets.encode(labels, MULTI, SPECIES, Unknown.minus_one).tolist() == [2.0, -1.0, 0.0]
    with pytest.raises(ValueError, match=r"\['Unicorn'\] are none of the classes"):
        targets.encode(labels, MULTI, SPECIES, Unknown.error)
    # every label a class: the three agree
    known = ["Chinstrap", "Adelie"]
    for unknown in Unknown:
        assert targets.encode(known, MULTI, SPECIES, unknown).tolist() == [1.0, 0.0]


def test_regression_values_pass_through_and_classes_are_ignored():
    got = targets.encode([1.5, 2, -3], Task.regression, [], Unknown.error)
    assert got.dtype == np.float64 and got.tolist() == [1.5, 2.0, -3.0]


@pytest.mark.parametrize(
    ("value", "task", "classes", "want"),
    [
        ("Gentoo", MULTI, SPECIES, 2.0),
        ("Unicorn", MULTI, SPECIES, None),
        (1, Task.binary_classification, ["0", "1"], 1.0),
        (True, Task.binary_classification, [0, 1], None),  # a bool is no number
        (2.5, Task.regression, [], 2.5),
        (float("inf"), Task.regression, [], None),
        ("2.5", Task.regression, [], None),  # text is no value
    ],
)
def test_one_label_from_anywhere(value, task, classes, want):
    assert targets.encode_one(value, task, classes) == want


def test_decode_inverts_encode():
    y = np.array([2.0, 0.0, 1.0])
    decoded = targets.decode(y, MULTI, SPECIES)
    assert decoded == ["Gentoo", "Adelie", "Chinstrap"]
    assert targets.encode(decoded, MULTI, SPECIES, Unknown.error).tolist() == y.tolist()

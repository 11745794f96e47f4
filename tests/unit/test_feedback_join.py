"""Monitoring's reads of the serving logs: a window of one version's predictions, and feedback
labels joined to them by request id with every left-out label counted by why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from keel import prediction_log as plog
from keel.config import load
from keel.config.schema import ColumnSpec, ColumnType, Task
from keel.monitoring.logs import (
    NotLogged,
    Window,
    class_probabilities,
    feedback_given,
    join_feedback,
    parse_label,
    predictions,
    sample,
    wait_logged,
)

COLUMNS = {"age": ColumnSpec(type=ColumnType.int)}
START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
END = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)  # the window spans two day partitions
WINDOW = Window(START, END)
CLASSES = [0, 1]
BINARY = Task.binary_classification


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def prediction(rid: str, ts: datetime, version: int, variant: str = "primary", model="churn"):
    fixed = {
        "request_id": rid,
        "ts": ts,
        "model": model,
        "version": version,
        "variant": variant,
        "latency_ms": 2.0,
        "prediction": 0.25,
        "output": json.dumps({"label": 0}),
    }
    return plog.prediction_row(fixed, {"age": 30})


def write_predictions(logs: str, model: str, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=plog.prediction_schema(COLUMNS))
    plog.write(plog.predictions_dir(logs, model), table)


def write_feedback(logs: str, items: list[tuple[str, datetime, object]]) -> None:
    """(request_id, ts, label): the label is stored as JSON text, as the endpoint stores it."""
    rows = [{"request_id": r, "ts": ts, "label": json.dumps(v)} for r, ts, v in items]
    plog.write(plog.feedback_dir(logs), pa.Table.from_pylist(rows, schema=plog.FEEDBACK_SCHEMA))


@pytest.fixture
def logs(tmp_path) -> str:
    """churn v1 (primary) and v2 (canary) inside the window, v1 before it, shadows of v2 and
    a listings prediction; feedback for each case."""
    logs = str(tmp_path / "logs")
    write_predictions(
        logs,
        "churn",
        [
            prediction("a1", at(1), 1),
            prediction("a1", at(1), 2, "shadow"),  # a shadow logs the primary's request id
            prediction("a2", at(13), 1),  # the second day of the window
            prediction("a3", at(2), 1),
            prediction("a4", at(3), 1),  # no feedback
            prediction("start", START, 1),  # start is inclusive
            prediction("end", END, 1),  # end is exclusive
            prediction("early1", at(-2), 1),  # before the window
            prediction("early2", at(-30), 1),  # before the window, the day before
            prediction("b1", at(4), 2, "canary"),
            prediction("s1", at(5), 2, "shadow"),
        ],
    )
    write_predictions(logs, "listings", [prediction("l1", at(1), 4, model="listings")])
    write_feedback(
        logs,
        [
            ("a1", at(-1), 0),  # given before the window started: not read
            ("a2", at(20), 1),  # latest label of a2, written before the earlier one
            ("a1", at(2), 1),
            ("a2", at(14), 0),
            ("a3", at(3), "maybe"),  # not a class
            ("early1", at(3), 1),
            ("early2", at(3), 0),
            ("b1", at(5), 1),  # another version
            ("s1", at(6), 1),  # only a shadow answered it
            ("l1", at(2), 1),  # another model
            ("nobody", at(2), 1),
        ],
    )
    return logs


def joined(labels, served) -> dict[str, float]:
    ids = served["request_id"].to_pylist()
    return {ids[i]: y for i, y in zip(labels.index.tolist(), labels.y.tolist(), strict=True)}


# ----------------------------------------------------------------------------- predictions


def test_predictions_of_one_version_inside_the_window(logs):
    served = predictions(logs, "churn", 1, WINDOW)
    assert sorted(served["request_id"].to_pylist()) == ["a1", "a2", "a3", "a4", "start"]
    assert set(served["version"].to_pylist()) == {1}
    assert set(served["variant"].to_pylist()) == {"primary"}


def test_predictions_exclude_shadow_rows(logs):
    served = predictions(logs, "churn", 2, WINDOW)
    assert served["request_id"].to_pylist() == ["b1"]  # a1 and s1 of v2 were shadow answers


def test_predictions_of_any_version_keep_every_answer_but_shadows(logs):
    served = predictions(logs, "churn", None, WINDOW)
    assert sorted(served["request_id"].to_pylist()) == ["a1", "a2", "a3", "a4", "b1", "start"]
    assert "shadow" not in served["variant"].to_pylist()


def test_predictions_window_bounds(logs):
    just_after = Window(START + timedelta(microseconds=1), END + timedelta(microseconds=1))
    ids = predictions(logs, "churn", 1, just_after)["request_id"].to_pylist()
    assert "start" not in ids and "end" in ids


def test_predictions_of_an_unlogged_model_are_empty(logs):
    assert predictions(logs, "nothing", 1, WINDOW).num_rows == 0


def test_sample_of_few_files_is_every_answered_row_of_the_window(logs):
    drawn = sample(logs, "churn", 1, WINDOW, ["request_id"], rows=1, seed=0)
    assert sorted(drawn["request_id"].to_pylist()) == ["a1", "a2", "a3", "a4", "start"]


def test_sample_draws_whole_files_until_twice_the_rows_and_enough_files(tmp_path):
    logs = str(tmp_path / "logs")
    files = 3 * plog.SAMPLE_FILES
    for f in range(files):  # a file per flush: 10 answers and a shadow each
        rows = [prediction(f"r{f}-{i}", at(1 + f / files), 1) for i in range(10)]
        write_predictions(logs, "churn", [*rows, prediction(f"s{f}", at(1), 1, "shadow")])

    def ids(rows: int, seed: int) -> list[str]:
        got = sample(logs, "churn", 1, WINDOW, ["request_id"], rows, seed)["request_id"]
        return got.to_pylist()

    few = ids(rows=5, seed=0)  # 10 rows are in one file: SAMPLE_FILES files are read anyway
    assert len(few) == 10 * plog.SAMPLE_FILES and not any(i.startswith("s") for i in few)
    drawn = {i.split("-")[0] for i in few}
    assert len(drawn) == plog.SAMPLE_FILES  # whole files: each drawn file gives all 10 rows
    assert ids(rows=5, seed=0) == few  # the seed decides
    assert ids(rows=5, seed=1) != few
    # twice 100 answered rows: 20 files (a shadow row each is logged, not counted, not kept)
    assert len(ids(rows=100, seed=0)) == 10 * 20
    assert len(ids(rows=10_000, seed=0)) == 10 * files  # more than the window: all of it


def test_sample_counts_only_the_versions_rows_toward_its_size(tmp_path):
    """After a promotion most of a window's files may be the old version's: the drawn files must
    still hold twice the sample of the monitored one."""
    logs = str(tmp_path / "logs")
    for f in range(30):
        version = 2 if f % 5 == 0 else 1  # 6 files of v2 among 24 of v1
        rows = [prediction(f"v{version}-{f}-{i}", at(1 + f / 30), version) for i in range(10)]
        write_predictions(logs, "churn", rows)
    drawn = sample(logs, "churn", 2, WINDOW, ["request_id", "version"], rows=20, seed=0)
    assert set(drawn["version"].to_pylist()) == {2}
    assert drawn.num_rows == 60  # all six v2 files: 40 rows need 4, SAMPLE_FILES asks for 8


def test_feedback_given_only_since_the_window_began(logs, tmp_path):
    assert feedback_given(logs, WINDOW)
    assert not feedback_given(logs, Window(at(30), at(40)))
    assert not feedback_given(str(tmp_path / "none"), WINDOW)


# ----------------------------------------------------------------------------- join


def test_join_counts_every_case(logs):
    served = predictions(logs, "churn", 1, WINDOW)
    labels = join_feedback(logs, "churn", 1, served, WINDOW, BINARY, CLASSES)
    assert labels.counts == {
        "feedback": 10,  # the label given before the window is not read
        "matched": 2,  # a1, a2
        "duplicates": 1,  # a2's earlier label
        "late": 2,  # early1, early2: v1 answered them before the window
        "other": 3,  # b1 (v2), s1 (a shadow), l1 (listings)
        "unknown": 1,  # nobody
        "invalid": 1,  # a3: "maybe"
    }
    total = sum(v for k, v in labels.counts.items() if k != "feedback")
    assert total == labels.counts["feedback"]


def test_join_aligns_labels_with_served_rows_and_the_latest_label_wins(logs):
    served = predictions(logs, "churn", 1, WINDOW)
    labels = join_feedback(logs, "churn", 1, served, WINDOW, BINARY, CLASSES)
    # a2 got 0 at +14h and 1 at +20h: the later one wins though it was written first;
    # a1's 0 was given before the window and is not read, so its 1 stands alone
    assert joined(labels, served) == {"a1": 1.0, "a2": 1.0}
    assert labels.index.dtype == np.int64


def test_join_of_another_version_sees_the_first_versions_ids_as_other(logs):
    served = predictions(logs, "churn", 2, WINDOW)
    labels = join_feedback(logs, "churn", 2, served, WINDOW, BINARY, CLASSES)
    assert joined(labels, served) == {"b1": 1.0}
    counts = labels.counts
    assert (counts["matched"], counts["late"], counts["unknown"]) == (1, 0, 1)
    # a1, a2, a3 (v1 in the window), early1, early2 (v1 before it), s1 (shadow), l1
    assert counts["other"] == 7
    assert counts["invalid"] == 0  # a3's bad label is counted where its id went: other


def test_join_of_any_version(logs):
    served = predictions(logs, "churn", None, WINDOW)
    labels = join_feedback(logs, "churn", None, served, WINDOW, BINARY, CLASSES)
    assert joined(labels, served) == {"a1": 1.0, "a2": 1.0, "b1": 1.0}
    counts = labels.counts
    assert (counts["matched"], counts["late"], counts["other"]) == (3, 2, 2)  # other: s1, l1
    assert (counts["unknown"], counts["invalid"], counts["duplicates"]) == (1, 1, 1)


def test_join_with_no_feedback_in_the_window(logs):
    later = Window(END + timedelta(days=5), END + timedelta(days=6))
    served = predictions(logs, "churn", 1, WINDOW)
    labels = join_feedback(logs, "churn", 1, served, later, BINARY, CLASSES)
    assert len(labels.index) == 0 and len(labels.y) == 0
    assert set(labels.counts.values()) == {0}


def test_join_with_nothing_served_still_tells_unknown_from_other(tmp_path):
    """No prediction of the version in the window: a label for an id no log holds is unknown,
    one for another model's id is other (the early return must not call them all other)."""
    logs = str(tmp_path / "logs")
    write_predictions(logs, "listings", [prediction("l1", at(1), 4, model="listings")])
    write_feedback(logs, [("nobody", at(2), 1), ("l1", at(2), 1)])
    served = predictions(logs, "churn", 1, WINDOW)
    assert served.num_rows == 0
    labels = join_feedback(logs, "churn", 1, served, WINDOW, BINARY, CLASSES)
    assert labels.counts["feedback"] == 2
    assert (labels.counts["unknown"], labels.counts["other"]) == (1, 1)


def test_join_regression_labels_invalid_when_not_finite_numbers(tmp_path):
    logs = str(tmp_path / "logs")
    rows = [prediction(f"r{i}", at(1), 1, model="listings") for i in range(6)]
    write_predictions(logs, "listings", rows)
    write_feedback(
        logs,
        [
            ("r0", at(2), 1250.5),
            ("r1", at(2), 900),
            ("r2", at(2), True),  # a bool is not a value
            ("r3", at(2), "cheap"),
            ("r4", at(2), float("nan")),  # json.dumps writes NaN; json.loads reads it back
            ("r5", at(2), float("inf")),
        ],
    )
    served = predictions(logs, "listings", 1, WINDOW)
    labels = join_feedback(logs, "listings", 1, served, WINDOW, Task.regression, [])
    assert joined(labels, served) == {"r0": 1250.5, "r1": 900.0}
    assert (labels.counts["matched"], labels.counts["invalid"]) == (2, 4)


# ----------------------------------------------------------------------------- parse_label


@pytest.mark.parametrize("raw", ["1", '"1"'])
def test_parse_label_matches_classes_by_value(raw):
    assert parse_label(raw, BINARY, [0, 1]) == 1.0
    assert parse_label(raw, BINARY, ["0", "1"]) == 1.0


def test_parse_label_class_index_follows_the_class_order():
    classes = ["basic", "plus", "premium"]
    task = Task.multiclass_classification
    assert [parse_label(json.dumps(c), task, classes) for c in classes] == [0.0, 1.0, 2.0]
    assert parse_label('"gold"', task, classes) is None


def test_parse_label_bool_classes():
    assert parse_label("true", BINARY, [False, True]) == 1.0
    assert parse_label("false", BINARY, [False, True]) == 0.0
    assert parse_label("true", BINARY, [0, 1]) is None


@pytest.mark.parametrize("raw", ['"maybe"', "2", "-1", "null", "[1]"])
def test_parse_label_not_a_class(raw):
    assert parse_label(raw, BINARY, [0, 1]) is None


def test_parse_label_integral_float_matches_an_int_class():
    """1.0 is the value 1: a label file whose column pandas made float (a NaN among ints)
    stores "1.0", and the endpoint takes 1.0 as a label too."""
    assert parse_label("1.0", BINARY, [0, 1]) == 1.0
    assert parse_label("0.0", BINARY, [0, 1]) == 0.0


@pytest.mark.parametrize(("raw", "value"), [("3.5", 3.5), ("-2", -2.0), ("0", 0.0)])
def test_parse_label_regression_value(raw, value):
    assert parse_label(raw, Task.regression, []) == value


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "true", "false", '"3.5"', "null"])
def test_parse_label_regression_refuses_non_values(raw):
    assert parse_label(raw, Task.regression, []) is None


def test_parse_label_regression_int_too_large_for_a_float_is_invalid_not_an_error():
    # the endpoint accepts any JSON integer; one such label must not crash keel monitor
    assert parse_label("1" + "0" * 400, Task.regression, []) is None


@pytest.mark.parametrize("raw", ["{", "1,", "", "maybe", None])
def test_parse_label_bad_json_is_none(raw):
    assert parse_label(raw, BINARY, [0, 1]) is None
    assert parse_label(raw, Task.regression, []) is None


# ----------------------------------------------------------------------------- multiclass

MULTI = Task.multiclass_classification
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def multiclass_prediction(rid: str, ts: datetime, proba: list[float] | None) -> dict:
    row = prediction(rid, ts, 1, model="penguins")
    row["prediction"] = max(proba) if proba else 0.5
    row[plog.PROBABILITIES] = proba
    return row


def old_prediction_table(rows: list[dict]) -> pa.Table:
    """Rows as a log written before the log kept class probabilities: no such column."""
    fields = [f for f in plog.prediction_schema(COLUMNS) if f.name != plog.PROBABILITIES]
    old = [{k: v for k, v in r.items() if k != plog.PROBABILITIES} for r in rows]
    return pa.Table.from_pylist(old, schema=pa.schema(fields))


@pytest.mark.parametrize("old_first", [True, False], ids=["old-file-first", "new-file-first"])
def test_old_log_files_without_probabilities_read_as_null(tmp_path, old_first):
    """A dataset takes its schema from one file: whichever comes first, old rows read with a
    null `probabilities` and new rows keep theirs."""
    logs = str(tmp_path / "logs")
    directory = plog.predictions_dir(logs, "penguins")
    old = old_prediction_table([multiclass_prediction("old", at(1), None)])
    new = pa.Table.from_pylist(
        [multiclass_prediction("new", at(2), [0.1, 0.7, 0.2])],
        schema=plog.prediction_schema(COLUMNS),
    )
    plog.write(directory, old, "a-old" if old_first else "z-old")  # file names sort: read order
    plog.write(directory, new, "m-new")
    served = predictions(logs, "penguins", 1, WINDOW)
    assert served.schema.field(plog.PROBABILITIES).type == pa.list_(pa.float64())
    ids, logged = served["request_id"].to_pylist(), served[plog.PROBABILITIES].to_pylist()
    got = dict(zip(ids, logged, strict=True))
    assert got == {"old": None, "new": [0.1, 0.7, 0.2]}
    matrix = class_probabilities(served[plog.PROBABILITIES], 3)
    rows = {rid: matrix[i] for i, rid in enumerate(served["request_id"].to_pylist())}
    assert np.isnan(rows["old"]).all()
    np.testing.assert_array_equal(rows["new"], [0.1, 0.7, 0.2])


def test_a_window_of_old_files_only_still_has_the_field(tmp_path):
    logs = str(tmp_path / "logs")
    table = old_prediction_table([multiclass_prediction("old", at(1), None)])
    plog.write(plog.predictions_dir(logs, "penguins"), table)
    served = predictions(logs, "penguins", 1, WINDOW)
    assert served[plog.PROBABILITIES].to_pylist() == [None]


def test_class_probabilities_need_exactly_k_values():
    logged = pa.array([[0.2, 0.8], None, [0.1, 0.2, 0.7], [], [0.5, None]], pa.list_(pa.float64()))
    matrix = class_probabilities(logged, 2)
    assert matrix.shape == (5, 2)
    np.testing.assert_array_equal(matrix[0], [0.2, 0.8])
    assert np.isnan(matrix[1:4]).all()  # none, three classes, none at all
    assert np.isnan(matrix[4, 1])  # a null probability cannot be scored either
    assert class_probabilities(pa.chunked_array([], pa.list_(pa.float64())), 3).shape == (0, 3)


def _join_multiclass(tmp_path, labels: list, classes: list):
    """Five served multiclass predictions p0..p4, one label each: (joined labels, served)."""
    logs = str(tmp_path / "logs")
    rows = [multiclass_prediction(f"p{i}", at(1), [0.2, 0.3, 0.5]) for i in range(5)]
    write_predictions(logs, "penguins", rows)
    write_feedback(logs, [(f"p{i}", at(2), label) for i, label in enumerate(labels)])
    served = predictions(logs, "penguins", 1, WINDOW)
    return join_feedback(logs, "penguins", 1, served, WINDOW, MULTI, classes), served


def test_join_multiclass_text_labels_and_an_unknown_class_is_invalid(tmp_path):
    # "Unicorn" is no class of the model (invalid, not a crash), an index is not a species,
    # nor is another spelling
    labels, served = _join_multiclass(
        tmp_path, ["Adelie", "Gentoo", "Unicorn", 2, "chinstrap"], SPECIES
    )
    assert joined(labels, served) == {"p0": 0.0, "p1": 2.0}
    assert (labels.counts["matched"], labels.counts["invalid"]) == (2, 3)


def test_join_multiclass_int_classes_take_numbers_and_their_text(tmp_path):
    labels, served = _join_multiclass(tmp_path, [2, "1", 0.0, 3, True], [0, 1, 2])
    assert joined(labels, served) == {"p0": 2.0, "p1": 1.0, "p2": 0.0}
    assert labels.counts["invalid"] == 2  # 3 is no class, true is no number


def test_wait_logged_returns_the_window_once_predictions_and_labels_are_written(tmp_path):
    cfg = load([f"paths.root={tmp_path}"])
    start = plog.now() - timedelta(seconds=1)
    rows = [prediction(f"r{i}", plog.now(), 1) for i in range(3)]
    write_predictions(cfg.paths.logs, "churn", rows)
    write_feedback(cfg.paths.logs, [("r0", plog.now(), 1), ("r2", plog.now(), 0)])
    window = wait_logged(cfg, "churn", start, rows=3, labels=2, timeout_s=5)
    assert window.start == start and window.end <= plog.now()
    assert predictions(cfg.paths.logs, "churn", 1, window).num_rows == 3


def test_wait_logged_names_what_is_missing(tmp_path):
    cfg = load([f"paths.root={tmp_path}"])
    start = plog.now() - timedelta(seconds=1)
    write_predictions(cfg.paths.logs, "churn", [prediction("r0", plog.now(), 1)])
    with pytest.raises(NotLogged, match="logged 1 of 1 churn rows and 0 of 1 labels"):
        wait_logged(cfg, "churn", start, rows=1, labels=1, timeout_s=0.5)
    with pytest.raises(NotLogged, match="logged 1 of 2 churn rows"):
        wait_logged(cfg, "churn", start, rows=2, labels=0, timeout_s=0.5)

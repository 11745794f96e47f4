"""Every config key carries a one-line description, and `keel describe GROUP` prints each key of
a group with its type, default, range and description, read from the schema alone."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from keel import cli
from keel.app import console
from keel.config import reference, schema
from keel.config.schema import KeelConfig, doc_of

LONGEST_DOC = 120


def reachable() -> set[type]:
    return {KeelConfig} | {g.schema for g in reference.groups().values()}


def test_every_config_dataclass_is_reachable_from_the_root():
    declared = {v for v in vars(schema).values() if isinstance(v, type) and is_dataclass(v)}
    assert reachable() == declared


def test_every_config_key_has_a_one_line_description():
    """A key added without `doc=` (described, ranged, duration) fails here."""
    bad = [
        f"{cls.__name__}.{f.name}: {doc_of(f)!r}"
        for cls in reachable()
        for f in fields(cls)
        if not doc_of(f).strip() or "\n" in doc_of(f) or len(doc_of(f)) > LONGEST_DOC
    ]
    assert not bad, bad


def describe(capsys, monkeypatch, *args: str) -> tuple[int | str | None, str]:
    """`keel describe ARGS` in this process: its exit code (None when it returns) and output,
    on a console wide enough for each key's row to stay on one line."""
    monkeypatch.setattr(console, "width", 400)
    code = None
    try:
        cli.main(["describe", *args])
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().out


def row(out: str, key: str) -> list[str]:
    """The cells of the row of `key` (cells are separated by two spaces or more)."""
    found = [line for line in out.splitlines() if line.split()[:1] == [key]]
    assert len(found) == 1, (key, out)
    return [cell.strip() for cell in found[0].strip().split("  ") if cell.strip()]


def test_describe_train_prints_type_default_range_and_description(capsys, monkeypatch):
    code, out = describe(capsys, monkeypatch, "train")
    assert code is None
    assert out.startswith("train: Ray Train")
    assert row(out, "train.lr") == [
        "train.lr",
        "float",
        "0.001",
        "> 0.0",
        "the optimizer's learning rate",
    ]
    assert row(out, "train.epochs")[:4] == ["train.epochs", "int | null", "null", ">= 1"]
    assert row(out, "train.optimizer")[:3] == ["train.optimizer", "adam | adamw | sgd", "adamw"]
    assert len([line for line in out.splitlines() if line.strip().startswith("train.")]) == len(
        fields(schema.TrainConfig)
    )


def test_describe_shows_durations_groups_and_map_entries(capsys, monkeypatch):
    code, out = describe(capsys, monkeypatch, "monitor", "serve.models.churn.postprocess")
    assert code is None
    window = row(out, "monitor.window")
    assert window[:4] == ["monitor.window", "str", "1d", reference.DURATION]
    assert row(out, "monitor.retrain")[:2] == ["monitor.retrain", "group"]
    retrain_on = row(out, "monitor.retrain_on")  # a long type or default folds onto more lines
    assert (retrain_on[1], retrain_on[2]) == ("list[drift | quality |", "[drift, quality,")
    rules = row(out, "serve.models.<name>.postprocess.rules")
    assert rules[:3] == ["serve.models.<name>.postprocess.rules", "list[group]", "[]"]
    assert row(out, "serve.models.<name>.postprocess.threshold")[3] == "[0.0, 1.0]"


def test_describe_without_a_group_lists_every_group(capsys, monkeypatch):
    code, out = describe(capsys, monkeypatch)
    assert code is None
    for name in ("train", "serve.batching", "dataset.split", "monitor.retrain"):
        assert row(out, name)[1] == "group"
    assert row(out, "seed")[:3] == ["seed", "int", "0"]


def test_an_unknown_group_names_the_known_ones_and_exits_2(capsys, monkeypatch):
    code, out = describe(capsys, monkeypatch, "trian")
    assert code == 2
    assert "error: unknown config group 'trian'; known: dataset, dataset.columns," in out
    assert "serve.batching" in out and "monitor.retrain" in out
    assert "Traceback" not in out

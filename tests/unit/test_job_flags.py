"""A job's own command-line flags (`--every 10m`, `--runs 3`, `--force`) split from its Hydra
overrides, the duration strings monitoring takes, and the monitor config's checked keys."""

from __future__ import annotations

import functools

import pytest

from keel.app import Flag, Summary, split_flags
from keel.config import load
from keel.durations import duration_seconds
from keel.errors import ConfigError

KNOWN = {"--every": Flag(str, "watch"), "--runs": Flag(int, "reports"), "--force": Flag(bool, "go")}


def exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        split_flags(argv, KNOWN)
    return info.value.code


# ----------------------------------------------------------------------------- split_flags


def test_no_flags_leaves_every_override():
    assert split_flags(["experiment=churn", "train.epochs=3"], KNOWN) == (
        {},
        ["experiment=churn", "train.epochs=3"],
    )


def test_bool_flag_takes_no_value():
    flags, rest = split_flags(["--force", "experiment=churn"], KNOWN)
    assert flags == {"--force": True}
    assert rest == ["experiment=churn"]  # not swallowed as the flag's value


@pytest.mark.parametrize("argv", [["--every", "10m"], ["--every=10m"]])
def test_value_flag_separate_or_joined(argv):
    flags, rest = split_flags(["experiment=churn", *argv, "monitor.window=6h"], KNOWN)
    assert flags == {"--every": "10m"}
    assert rest == ["experiment=churn", "monitor.window=6h"]


@pytest.mark.parametrize("argv", [["--runs", "3"], ["--runs=3"]])
def test_int_flag_is_converted(argv):
    flags, _ = split_flags(argv, KNOWN)
    assert flags == {"--runs": 3}
    assert isinstance(flags["--runs"], int)


def test_flags_and_overrides_interleaved_keep_override_order():
    argv = ["a=1", "--every", "5m", "b=2", "--force", "c=3", "--runs=2", "d=4"]
    flags, rest = split_flags(argv, KNOWN)
    assert flags == {"--every": "5m", "--force": True, "--runs": 2}
    assert rest == ["a=1", "b=2", "c=3", "d=4"]


def test_overrides_with_plus_and_tilde_are_not_flags():
    flags, rest = split_flags(["+train.seed=1", "~sweep", "-x=1"], KNOWN)
    assert flags == {}
    assert rest == ["+train.seed=1", "~sweep", "-x=1"]


@pytest.mark.parametrize("argv", [["--evry", "10m"], ["--every=10m", "--verbose"], ["--"]])
def test_unknown_flag_exits_2(argv):
    assert exit_code(argv) == 2


@pytest.mark.parametrize("argv", [["--runs", "three"], ["--runs=1.5"], ["--runs"]])
def test_bad_int_exits_2(argv):
    assert exit_code(argv) == 2


def test_a_value_flag_given_no_value_exits_2():
    """`keel monitor --every` with nothing after it: an empty interval is no interval (int
    flags already refuse this; a str flag took "" and failed later, after starting Ray)."""
    assert exit_code(["experiment=churn", "--every"]) == 2


def test_a_bool_flag_given_a_value_exits_2():
    """`--force=false` must not force: a bool flag takes no value, so a value is an error."""
    assert exit_code(["--force=false"]) == 2


def test_summary_exit_code_defaults_to_zero():
    assert Summary("t").exit_code == 0
    assert Summary("t", exit_code=1).add("rows", 3).rows == [("rows", "3")]


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("2w", 1_209_600.0),
        (" 30m ", 1800.0),
        ("6 h", 21600.0),
    ],
)
def test_duration_seconds(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(
    "text", ["10", "m", "0m", "0.0s", "-1h", "1y", "", "1.5.5h", "h10", "10m5s", None]
)
def test_bad_durations_raise_value_error(text):
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


# ----------------------------------------------------------------------------- monitor config


@functools.cache
def _error(overrides: tuple[str, ...]) -> str:
    with pytest.raises(ConfigError) as info:
        load(list(overrides))
    return str(info.value)


def test_valid_monitor_durations_load():
    cfg = load(["monitor.window=6h", "monitor.retrain.window=2w"])
    assert (cfg.monitor.window, cfg.monitor.retrain.window) == ("6h", "2w")


def test_bad_monitor_window_names_the_key():
    message = _error(("monitor.window=3x",))
    assert "monitor.window" in message and "'3x'" in message
    assert "monitor.retrain.window" not in message


def test_bad_retrain_window_names_the_key():
    message = _error(("monitor.retrain.window=0d",))
    assert "monitor.retrain.window" in message and "'0d'" in message


def test_retrain_on_an_unknown_check():
    message = _error(("monitor.retrain_on=[drift,accuracy]",))
    assert "monitor.retrain_on" in message and "accuracy" in message
    assert load(["monitor.retrain_on=[quality]"]).monitor.retrain_on == ["quality"]


def test_monitor_columns_must_be_dataset_columns():
    # `++`: Hydra refuses new keys in an existing dict node without it
    message = _error(("++monitor.columns={agee: {method: psi}}",))
    assert "monitor.columns: no such columns in dataset 'churn'" in message
    assert "agee" in message
    cfg = load(["++monitor.columns={age: {method: psi}}"])
    assert cfg.monitor.columns["age"].method == "psi"


def test_every_monitor_problem_is_reported_at_once():
    message = _error(("monitor.window=10", "monitor.retrain.window=1y"))
    assert "2 problem(s)" in message
    assert "monitor.window" in message and "monitor.retrain.window" in message


def test_the_leaderboards_short_words_stand_for_their_keys():
    from keel.cli.leaderboard import expand

    assert expand("families=[mlp,xgboost]") == "leaderboard.models=[mlp,xgboost]"
    assert expand("budget=30m") == "leaderboard.budget=30m"
    assert expand("experiment=churn") == "experiment=churn"
    assert expand("budget") == "budget"  # not an override: left for the config to refuse

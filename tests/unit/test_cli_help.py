"""`keel JOB --help` prints the job's purpose, its usage and the config groups, and exits 0,
before the job parses a flag of its own (`keel submit --help` was "unknown option", exit 2)."""

from __future__ import annotations

import os

import pytest

from keel import cli


@pytest.mark.parametrize("name", sorted(cli.available()))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_job_answers_help_with_exit_0(name, flag, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "experiment=churn", flag])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"keel {name}: {cli.available()[name]}")
    assert "config groups: " in out and "dataset" in out and "serve" in out
    declared = cli.reads(cli.scripts()[name])
    assert f"It reads the config groups: {', '.join(declared)}\n" in out


@pytest.mark.parametrize("name", sorted(cli.available()))
def test_every_packaged_job_declares_groups_that_exist(name):
    declared = cli.reads(cli.scripts()[name])
    assert declared, f"keel/cli/{name}.py declares no GROUPS"
    groups = {p.name for p in cli.conf_dir().iterdir() if p.is_dir()}
    assert set(declared) <= groups, set(declared) - groups


def test_submit_help_is_its_own_not_the_submitted_jobs(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["submit", "train", "--help"])
    assert done.value.code == 0
    assert "--address" in capsys.readouterr().out  # submit's usage line


def test_an_unknown_job_still_exits_2(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["nosuchjob", "--help"])
    assert done.value.code == 2
    assert "unknown job 'nosuchjob'" in capsys.readouterr().err


def test_config_dir_that_is_not_a_directory_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KEEL_CONFIG_DIR", raising=False)
    with pytest.raises(SystemExit) as done:
        cli.main(["--config-dir", str(tmp_path / "nowhere"), "config"])
    assert done.value.code == 2
    assert "nowhere: no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli.main(["--config-dir"])
    assert done.value.code == 2


def test_a_config_tree_without_its_root_file_names_the_fix(tmp_path, monkeypatch):
    from keel.config import conf_dir, load
    from keel.errors import ConfigError

    monkeypatch.setenv("KEEL_CONFIG_DIR", str(tmp_path))
    assert conf_dir() == tmp_path.resolve()
    with pytest.raises(ConfigError, match=r"no keel config at .*KEEL_CONFIG_DIR"):
        load([])


def test_config_dir_flag_sets_the_tree_for_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_CONFIG_DIR", "restored after the test")
    assert cli.config_dir([f"--config-dir={tmp_path}", "train", "x=1"]) == ["train", "x=1"]
    assert os.environ["KEEL_CONFIG_DIR"] == str(tmp_path.resolve())

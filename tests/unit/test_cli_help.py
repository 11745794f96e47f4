"""`keel JOB --help` prints the job's purpose, its usage, its flags and the config groups, and
exits 0, before the job parses a flag of its own (`keel submit --help` was "unknown option",
exit 2); `python jobs/JOB.py` and `python -m keel.cli.JOB` print the same help and take
--config-dir too (they passed --help to Hydra as an override)."""

from __future__ import annotations

import importlib
import os
import runpy
import shutil
import sys

import pytest

from keel import cli
from keel.config import conf_dir

ROOT = cli.PACKAGED.parents[2]


def module(name: str):
    return importlib.import_module(f"keel.cli.{name}")


def declared(name: str) -> tuple[str, ...]:
    return tuple(module(name).GROUPS.split())


@pytest.mark.parametrize("name", sorted(cli.available()))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_job_answers_help_with_exit_0(name, flag, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "experiment=churn", flag])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"keel {name}: {cli.available()[name]}")
    assert "config groups: " in out and "dataset" in out and "serve" in out
    assert f"It reads the config groups: {', '.join(declared(name))}\n" in out
    for flag in getattr(module(name), "FLAGS", {}):  # each flag the job declares
        assert flag in out


@pytest.mark.parametrize("name", sorted(cli.available()))
def test_every_packaged_job_declares_groups_that_exist(name):
    assert declared(name), f"keel/cli/{name}.py declares no GROUPS"
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    assert set(declared(name)) <= groups, set(declared(name)) - groups


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


def run_script(path, *args: str) -> int | str | None:
    """`python jobs/NAME.py ARGS` in this process: its exit code (None when it returns)."""
    argv = sys.argv
    sys.argv = [str(path), *args]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as done:
        return done.code
    finally:
        sys.argv = argv
    return None


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "jobs").glob("*.py")))
def test_the_job_script_prints_the_same_help_as_keel(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0
    by_keel = capsys.readouterr().out
    assert run_script(ROOT / "jobs" / f"{name}.py", "experiment=churn", "--help") == 0
    assert capsys.readouterr().out == by_keel


def test_submit_help_through_its_script_lists_its_flags_and_groups(capsys):
    assert run_script(ROOT / "jobs" / "submit.py", "train", "-h") == 0
    out = capsys.readouterr().out
    assert out.startswith("keel submit: Submit a job to a Ray cluster")
    assert "usage: keel submit JOB [key=value ...] [--address URL]" in out
    for flag, text in {
        "--cpus N": "CPUs the entrypoint",
        "--gpus N": "GPUs the entrypoint",
    }.items():
        assert any(flag in line and text in line for line in out.splitlines()), flag
    assert "It reads the config groups: ray, paths\n" in out


def test_help_of_the_module_run_as_main(capsys, monkeypatch):
    """`python -m keel.cli.monitor --help`: the module is __main__, its name still monitor."""
    monkeypatch.setattr(sys, "argv", ["monitor.py", "--help"])
    monkeypatch.delitem(sys.modules, "keel.cli.monitor", raising=False)  # as python -m finds it
    with pytest.raises(SystemExit) as done:
        runpy.run_module("keel.cli.monitor", run_name="__main__", alter_sys=True)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("keel monitor: Drift, quality and SLO report")
    assert "--every INTERVAL" in out and "--runs N" in out


def test_the_job_script_takes_config_dir(tmp_path, capsys, monkeypatch):
    """The same tree as `keel --config-dir DIR config`: a dataset only the copy holds."""
    monkeypatch.setenv("KEEL_CONFIG_DIR", "restored after the test")
    mine = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", mine)
    churn = (mine / "dataset" / "churn.yaml").read_text()
    (mine / "dataset" / "ours.yaml").write_text(churn.replace("name: churn", "name: ours", 1))
    assert (
        run_script(ROOT / "jobs" / "config.py", "dataset=ours", "--config-dir", str(mine)) is None
    )
    assert "name: ours" in capsys.readouterr().out
    assert os.environ["KEEL_CONFIG_DIR"] == str(mine.resolve())
    assert run_script(ROOT / "jobs" / "config.py", f"--config-dir={tmp_path / 'nowhere'}") == 2
    assert "nowhere: no such directory" in capsys.readouterr().err


def registry_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        module("registry").parse(list(argv))
    assert done.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    return err


def test_registry_argument_errors_name_the_fix(capsys):
    err = registry_error(capsys, "promote", "churn")
    assert "keel registry promote needs VERSION" in err
    assert "usage: keel registry promote MODEL VERSION [--stage STAGE] [--force]" in err
    assert "unrecognized arguments: --bogus" in registry_error(capsys, "list", "--bogus")
    err = registry_error(capsys, "list", "--stage", "staging")  # promote's flag, not list's
    assert "unrecognized arguments: --stage; usage: keel registry list" in err
    assert "unrecognized arguments: 4" in registry_error(capsys, "show", "churn", "3", "4")
    err = registry_error(capsys, "frob", "churn")
    assert "keel registry needs an action first (got 'frob'): list, show, promote, rollback" in err
    assert "--reason needs a str value" in registry_error(capsys, "rollback", "churn", "--reason")


def test_registry_words_flags_and_overrides_wherever_they_stand():
    parse = module("registry").parse
    req, overrides = parse(["show", "churn", "experiment=listings", "3", "~seed"])
    assert (req.command, req.model, req.ref, overrides) == (
        "show",
        "churn",
        "3",
        ["experiment=listings", "~seed"],
    )
    req, overrides = parse(["promote", "churn", "2", "--force", "--reason", "hotfix", "a=1"])
    assert (req.ref, req.stage, req.force, req.reason, overrides) == (
        "2",
        "production",
        True,
        "hotfix",
        ["a=1"],
    )
    req, _ = parse(["rollback", "churn", "--stage=staging", "--verbose"])
    assert (req.command, req.stage, req.force) == ("rollback", "staging", False)
    assert parse(["list", "--verbose"])[1] == ["ray.verbose=true"]

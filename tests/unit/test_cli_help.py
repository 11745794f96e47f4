"""`keel JOB --help` prints the job's purpose, its usage and the config groups, and exits 0,
before the job parses a flag of its own (`keel submit --help` was "unknown option", exit 2)."""

from __future__ import annotations

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

"""Drift, quality and SLO report over a window of the prediction log (exit 1 when it fails).

keel monitor experiment=churn [monitor.window=6h]
keel monitor experiment=churn --every 10m [--runs N]   # watch; failing verdicts submit
                                                       # keel retrain as a Ray job

With --every, each failing verdict that asks for retraining submits `keel retrain` (keel.cli.retrain
with the same overrides) as a Ray job, so retraining runs on the cluster, outlives this process
and shows in the Ray dashboard's job list. While one retrain job runs, no second one is
submitted. An embedded local Ray is started with its dashboard, which serves the Jobs API (its
agent needs port 52365: on a machine that already runs a Ray, give `ray.address` of a cluster).
With `--runs N` the watch stops after N checks and waits for the retrain jobs it submitted.
The watch lives here, beside the jobs, because it submits one: monitoring sits below the jobs
and the Jobs API client (docs/architecture.md) and imports neither.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

from keel import runtime, submission
from keel.app import Flag, Summary, command_line, main
from keel.cli import entrypoint
from keel.config import KeelConfig
from keel.durations import duration_seconds
from keel.errors import ConfigError
from keel.monitoring.monitor import describe, run

GROUPS = "monitor slo dataset paths ray"  # the config groups it reads
log = logging.getLogger(__name__)
FLAGS = {
    "--every": Flag(str, "watch: a report each interval (10m, 1h)", "INTERVAL"),
    "--runs": Flag(int, "with --every: stop after N reports", "N"),
}


def monitor_job(cfg: KeelConfig) -> Summary:
    monitored = run(cfg)
    title = f"monitor {monitored.model} v{monitored.version}"
    return Summary(title, describe(monitored), exit_code=0 if monitored.passed else 1)


def watch(cfg: KeelConfig, overrides: list[str], every: str, runs: int | None = None) -> Summary:
    try:
        pause = duration_seconds(every)
    except ValueError as e:
        raise ConfigError(f"--every: {e}") from None
    if not cfg.ray.address:  # the Jobs API lives in the dashboard
        cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, include_dashboard=True))
    runtime.ensure(cfg)
    client = submission.connect(_dashboard())
    submitted: list[str] = []
    done = 0
    while True:
        monitored = run(cfg)
        done += 1
        Summary(
            f"monitor run {done}: {monitored.model} v{monitored.version}", describe(monitored)
        ).show()
        if monitored.verdict.retrain:
            running = submitted and not client.get_job_status(submitted[-1]).is_terminal()
            if running:
                log.info("retrain job %s still running; not submitting another", submitted[-1])
            else:
                submitted.append(_submit_retrain(client, overrides))
        if runs is not None and done >= runs:
            break
        time.sleep(pause)
    if runs is not None:  # a bounded watch reports how its jobs ended (an embedded Ray would
        for job in submitted:  # end with this process, and its jobs with it)
            log.info("waiting for retrain job %s", job)
            submission.wait(client, job)
    summary = Summary(f"monitored {cfg.dataset.name} {done} times, every {every}")
    for job in submitted:
        summary.add(f"retrain job {job}", client.get_job_status(job).value)
        summary.add(f"{job} log", submission.last_lines(client.get_job_logs(job), 12))
    return summary


def _dashboard() -> str:
    from ray._private.worker import get_dashboard_url

    return f"http://{get_dashboard_url()}"


def _submit_retrain(client, overrides: list[str]) -> str:
    # This process's own cluster: its interpreter and project are the cluster's.
    command = entrypoint("retrain", overrides, python=sys.executable)
    job = submission.submit(client, command, entrypoint_num_cpus=0.1)
    log.info("submitted %s as Ray job %s", command, job)
    return job


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, overrides = command_line(__name__)
    if "--every" in flags:
        main(lambda cfg: watch(cfg, overrides, flags["--every"], flags.get("--runs")), overrides)
    else:
        main(monitor_job, overrides)


if __name__ == "__main__":
    command()

"""Submit a job to a Ray cluster through Ray's Jobs API, with this checkout's code and configs.

keel submit train experiment=churn paths.root=s3://bucket/keel --address http://127.0.0.1:8265

The overrides are checked here before anything is sent. Without --no-wait the command waits
for the job (--follow streams its log) and exits 0 only when the job succeeded.
"""

import logging

from keel import cli, submission
from keel.app import Flag, Summary, command_line, main, refuse
from keel.config import KeelConfig

GROUPS = "ray paths"  # the config groups it reads
WORDS = "JOB [key=value ...]"  # the overrides are the submitted job's
FLAGS = {
    "--address": submission.ADDRESS,
    "--follow": Flag(bool, "stream the job's log until it ends"),
    "--no-wait": Flag(bool, "return once submitted (not with --follow)"),
    "--cpus": Flag(float, "CPUs the entrypoint reserves (default 0)", "N"),
    "--gpus": Flag(float, "GPUs the entrypoint reserves (default 0)", "N"),
}
log = logging.getLogger("keel.submit")


def submit_job(cfg: KeelConfig, job: str, overrides: list[str], flags: dict) -> Summary:
    if flags.get("--follow") and flags.get("--no-wait"):
        raise submission.SubmitError("--follow and --no-wait exclude each other")
    address = submission.dashboard_url(flags.get("--address"))
    entrypoint = cli.entrypoint(job, overrides)
    client = submission.connect(address)
    if "://" not in cfg.paths.root:
        log.warning(
            "paths.root is a local path (%s): every node of the cluster must see it; "
            "use a shared URI such as paths.root=s3://BUCKET/keel",
            cfg.paths.root,
        )
    job_id = submission.call(
        lambda: submission.submit(
            client,
            entrypoint,
            runtime_env=submission.runtime_env(cfg),
            entrypoint_num_cpus=flags.get("--cpus", 0),
            entrypoint_num_gpus=flags.get("--gpus", 0),
            metadata={"keel_job": job},
        ),
        address,
    )
    print(f"submitted {job} as Ray job {job_id}", flush=True)
    summary = Summary(f"{job} on {address}: Ray job {job_id}").add("entrypoint", entrypoint)
    summary.add("logs", f"keel jobs logs {job_id} --address {address}")
    if flags.get("--no-wait"):
        return summary.add("status", "submitted (not waiting)")
    if flags.get("--follow"):
        submission.follow(client, job_id)
    status = submission.wait(client, job_id)
    summary.add("status", status)
    if not flags.get("--follow"):
        summary.add("log (last lines)", submission.last_lines(client.get_job_logs(job_id), 12))
    summary.exit_code = 0 if status == "SUCCEEDED" else 1
    return summary


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, rest = command_line(__name__)
    if not rest:
        refuse("keel submit needs the JOB to submit (keel submit --help lists its flags)")
    job, overrides = rest[0], rest[1:]
    main(lambda cfg: submit_job(cfg, job, overrides, flags), overrides)


if __name__ == "__main__":
    command()

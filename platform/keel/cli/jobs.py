"""List, inspect, follow and stop jobs on a Ray cluster.

keel jobs list --address URL
keel jobs status|logs|stop JOB_ID --address URL [--follow]
"""

import sys

from keel import submission
from keel.app import Summary, main, split_flags
from keel.config import KeelConfig

GROUPS = "ray"  # the config groups it reads

ACTIONS = ("list", "status", "logs", "stop")


def jobs_command(action: str, job_id: str | None, flags: dict) -> Summary | None:
    address = submission.dashboard_url(flags.get("--address"))
    client = submission.connect(address)
    if action == "list":
        jobs = submission.call(client.list_jobs, address)
        summary = Summary(f"{len(jobs)} job(s) on {address}")
        for job in sorted(jobs, key=lambda j: j.start_time or 0):
            name = (job.metadata or {}).get("keel_job", "-")
            summary.add(job.submission_id or job.job_id, f"{job.status.value:<9} {name}")
        return summary
    if action == "logs":
        if flags.get("--follow"):
            submission.call(lambda: submission.follow(client, job_id), address)
        else:
            print(submission.call(lambda: client.get_job_logs(job_id), address), end="")
        return None
    if action == "stop":
        stopped = submission.call(lambda: client.stop_job(job_id), address)
        return Summary(f"{job_id}: {'stop requested' if stopped else 'already ended'}")
    info = submission.call(lambda: client.get_job_info(job_id), address)
    summary = Summary(f"{job_id}: {info.status.value}").add("entrypoint", info.entrypoint)
    return summary.add("message", info.message or "")


def _job_id(rest: list[str]) -> str | None:
    if rest[0] == "list":
        return None
    if len(rest) != 2:
        raise submission.SubmitError(f"keel jobs {rest[0]} needs one JOB_ID (see keel jobs list)")
    return rest[1]


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, rest = split_flags(sys.argv[1:], {"--address": str, "--follow": bool})
    if not rest or rest[0] not in ACTIONS:
        print(f"usage: keel jobs {'|'.join(ACTIONS)} [JOB_ID] --address URL", file=sys.stderr)
        sys.exit(2)

    def run(cfg: KeelConfig) -> Summary | None:
        return jobs_command(rest[0], _job_id(rest), flags)

    main(run, [])


if __name__ == "__main__":
    command()

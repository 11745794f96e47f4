"""List, inspect, follow and stop jobs on a Ray cluster.

keel jobs list --address URL
keel jobs status|logs|stop JOB_ID --address URL [--follow]
"""

from keel import submission
from keel.app import Action, Flag, Summary, command_line, main, words_and_overrides
from keel.config import KeelConfig

GROUPS = "ray"  # the config groups it reads
FLAGS = {"--address": submission.ADDRESS}
ACTIONS = {
    "list": Action("every job on the cluster: its id, status and keel job"),
    "status": Action("a job's status, entrypoint and message", "JOB_ID"),
    "logs": Action(
        "a job's log", "JOB_ID", {"--follow": Flag(bool, "stream the log until the job ends")}
    ),
    "stop": Action("ask the cluster to stop a job", "JOB_ID"),
}


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


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, rest = command_line(__name__)  # the action and its JOB_ID checked there
    words, _ = words_and_overrides(rest)

    def run(cfg: KeelConfig) -> Summary | None:
        return jobs_command(words[0], words[1] if len(words) > 1 else None, flags)

    main(run, [])


if __name__ == "__main__":
    command()

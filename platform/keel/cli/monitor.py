"""Drift, quality and SLO report over a window of the prediction log (exit 1 when it fails).

keel monitor experiment=churn [monitor.window=6h]
keel monitor experiment=churn --every 10m [--runs N]   # watch; failing verdicts submit
                                                       # keel retrain as a Ray job
"""

from keel.app import Flag, Summary, command_line, main
from keel.config import KeelConfig
from keel.monitoring.monitor import describe, run

GROUPS = "monitor slo dataset paths ray"  # the config groups it reads
FLAGS = {
    "--every": Flag(str, "watch: a report each interval (10m, 1h)", "INTERVAL"),
    "--runs": Flag(int, "with --every: stop after N reports", "N"),
}


def monitor_job(cfg: KeelConfig) -> Summary:
    monitored = run(cfg)
    title = f"monitor {monitored.model} v{monitored.version}"
    return Summary(title, describe(monitored), exit_code=0 if monitored.passed else 1)


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, overrides = command_line(__name__)
    if "--every" in flags:
        from keel.monitoring.schedule import watch

        main(lambda cfg: watch(cfg, overrides, flags["--every"], flags.get("--runs")), overrides)
    else:
        main(monitor_job, overrides)


if __name__ == "__main__":
    command()

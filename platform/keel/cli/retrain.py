"""Retrain on recent labeled traffic; promote the challenger only if it beats the champion.

keel retrain experiment=churn            # runs when the latest monitor verdict asks for it
keel retrain experiment=churn --force    # runs anyway
"""

from keel import runtime
from keel.app import Flag, Summary, command_line, main
from keel.config import KeelConfig
from keel.monitoring.retrain import describe, retrain

GROUPS = "monitor slo dataset features model train tracking paths ray"  # the config groups it reads
FLAGS = {"--force": Flag(bool, "retrain whatever the latest monitor verdict says")}


def retrain_job(cfg: KeelConfig, overrides: list[str], force: bool) -> Summary:
    runtime.ensure(cfg)
    decision = retrain(cfg, overrides, force)
    return Summary(f"retrain {decision.model}", describe(decision))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, overrides = command_line(__name__)
    main(lambda cfg: retrain_job(cfg, overrides, "--force" in flags), overrides)


if __name__ == "__main__":
    command()

"""Validate, fit features, train with Ray Train, evaluate, and register a new model version."""

from keel import runtime, tracking
from keel.app import Summary, main
from keel.config import KeelConfig
from keel.training.run import describe, train

GROUPS = "dataset features model train slo tracking paths ray"  # the config groups it reads


def train_job(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    out = train(cfg)
    run_dir = tracking.log_trained(cfg, out)
    summary = Summary(f"trained {cfg.dataset.name} v{out.version.version}", describe(out))
    summary.rows += tracking.described(run_dir)
    return summary


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(train_job)


if __name__ == "__main__":
    command()

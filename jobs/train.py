"""Validate, fit features, train with Ray Train, evaluate, and register a new model version."""

from keel import runtime, tracking
from keel.app import Summary, main
from keel.config import KeelConfig, to_dict
from keel.training.run import describe, train


def train_job(cfg: KeelConfig) -> Summary:
    runtime.ensure(cfg)
    out = train(cfg)
    run_dir = tracking.log_training(
        cfg, to_dict(cfg), out.history, out.metrics, out.version.version, out.promoted
    )
    summary = Summary(f"trained {cfg.dataset.name} v{out.version.version}", describe(out))
    if run_dir:
        summary.add("wandb run", f"{run_dir} (upload later: wandb sync)")
    return summary


if __name__ == "__main__":
    main(train_job)

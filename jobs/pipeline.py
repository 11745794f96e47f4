"""The whole loop on the demo datasets (what `make demo` runs).

Stages built so far, for each demo dataset: validate, split, fit features on the training
split, train with Ray Train, evaluate against the baseline and register a version (the first
one passing the SLO floor serves as production). Serving, monitoring and retraining join as
they are built.
"""

import sys

from keel import runtime, tracking
from keel.app import Summary, main
from keel.config import KeelConfig, load, to_dict
from keel.data.validation import describe as describe_validation
from keel.training.dataset import prepare
from keel.training.run import describe as describe_training
from keel.training.run import train

DEMO = ("churn", "listings")


def pipeline(cfg: KeelConfig, overrides: list[str]) -> Summary:
    runtime.ensure(cfg)
    summary = Summary("keel pipeline")
    for name in DEMO:
        exp = load([*overrides, f"experiment={name}"])
        data = prepare(exp)
        trained = train(exp, data)
        run_dir = tracking.log_training(
            exp,
            to_dict(exp),
            trained.history,
            trained.metrics,
            trained.version.version,
            trained.promoted,
        )
        rows = [
            *describe_validation(data.validation),
            (
                "features",
                f"{len(data.features.output_columns)} columns from "
                f"{len(data.y_train):,} training rows",
            ),
            *describe_training(trained),
        ]
        if run_dir:
            rows.append(("wandb run", run_dir))
        summary.rows += [(f"[{name}] {what}", value) for what, value in rows]
    return summary


if __name__ == "__main__":
    main(lambda cfg: pipeline(cfg, sys.argv[1:]))

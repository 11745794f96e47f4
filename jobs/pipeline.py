"""The whole loop on the demo datasets (what `make demo` runs).

Stages built so far: validate each dataset, split it, and fit its feature pipeline on the
training split. Later stages (train, serve, monitor, retrain) join as they are built.
"""

import sys

from keel import runtime
from keel.app import Summary, main
from keel.config import KeelConfig, load
from keel.data.split import split
from keel.data.validation import describe, validate_source
from keel.features import FeaturePipeline
from keel.storage import join, stamp

DEMO = ("churn", "listings")


def pipeline(cfg: KeelConfig, overrides: list[str]) -> Summary:
    runtime.ensure(cfg)
    summary = Summary("keel pipeline")
    for name in DEMO:
        exp = load([*overrides, f"experiment={name}"])
        validated = validate_source(exp.dataset, exp.paths.reports)
        train = split(validated.valid, exp.dataset)["train"].materialize()
        features = FeaturePipeline.from_config(exp.features).fit(train, exp.features.batch_size)
        state = join(exp.paths.root, "features", name, stamp(), "features.json")
        features.save(state)
        summary.rows += [(f"[{name}] {what}", value) for what, value in describe(validated.report)]
        summary.add(
            f"[{name}] features",
            f"{len(features.output_columns)} columns from "
            f"{train.count():,} training rows -> {state}",
        )
    return summary


if __name__ == "__main__":
    main(lambda cfg: pipeline(cfg, sys.argv[1:]))

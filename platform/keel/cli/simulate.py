"""Send generated traffic (drift knobs in dataset.source.drift) to a running app, then its labels.

keel simulate experiment=churn simulate.rows=5000 dataset.source.drift.concept=1
"""

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.traffic import describe, simulate

GROUPS = "simulate dataset serve paths"  # the config groups it reads


def simulate_job(cfg: KeelConfig) -> Summary:
    traffic = simulate(cfg)
    title = f"sent {traffic.rows_sent:,} rows to {traffic.model} at {traffic.url}"
    return Summary(title, describe(traffic))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(simulate_job)


if __name__ == "__main__":
    command()

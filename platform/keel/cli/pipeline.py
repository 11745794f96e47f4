"""The whole loop end to end on the demo (what `make demo` runs): train, serve, drift, retrain.

keel pipeline [overrides]     # e.g. paths.root=/tmp/demo dataset.source.rows=5000
"""

import sys

from keel.app import main
from keel.pipeline import pipeline

# the config groups it reads
GROUPS = "dataset features model train slo serve monitor simulate tracking paths ray experiment"


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(lambda cfg: pipeline(sys.argv[1:]))


if __name__ == "__main__":
    command()

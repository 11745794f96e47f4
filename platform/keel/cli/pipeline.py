"""The whole loop end to end on the demo (what `make demo` runs): train, serve, drift, retrain.

keel pipeline [overrides]     # e.g. paths.root=/tmp/demo dataset.source.rows=5000
"""

from keel.app import command_line, main
from keel.pipeline import pipeline

# the config groups it reads
GROUPS = "dataset features model train slo serve monitor simulate tracking paths ray experiment"


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    _, overrides = command_line(__name__)
    main(lambda cfg: pipeline(overrides), overrides)


if __name__ == "__main__":
    command()

"""The whole loop end to end on the demo (what `make demo` runs): train, serve, drift, retrain.

keel pipeline [overrides]     # e.g. paths.root=/tmp/demo dataset.source.rows=5000
"""

import sys

from keel.app import main
from keel.pipeline import pipeline

if __name__ == "__main__":
    main(lambda cfg: pipeline(sys.argv[1:]))

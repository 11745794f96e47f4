"""Ingest ground-truth labels from a CSV or parquet file (request_id,label) into the feedback log.

keel feedback labels.csv [key=value ...]     (the log is under paths.logs)
"""

import sys
from collections.abc import Sequence

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.errors import ConfigError
from keel.monitoring.feedback import describe, ingest

GROUPS = "dataset paths"  # the config groups it reads

# no square brackets: errors print as rich markup
USAGE = "keel feedback FILE key=value... (FILE: a .csv or .parquet with request_id and label)"


def split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The FILE arguments (no '=') apart from the Hydra overrides (`~key` deletes a key)."""
    files = [a for a in argv if "=" not in a and not a.startswith("~")]
    return files, [a for a in argv if a not in files]


def feedback_job(cfg: KeelConfig, files: Sequence[str]) -> Summary:
    if len(files) != 1 or files[0].startswith("-"):
        got = " ".join(files) or "none"
        raise ConfigError(f"keel feedback takes one FILE (got: {got}); usage: {USAGE}")
    result = ingest(files[0], cfg.paths.logs)
    title = f"{result.accepted:,} labels from {files[0]} into the feedback log"
    return Summary(title, describe(result))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    files, overrides = split(sys.argv[1:])
    main(lambda cfg: feedback_job(cfg, files), overrides)


if __name__ == "__main__":
    command()

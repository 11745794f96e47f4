"""Ingest ground-truth labels from a CSV or parquet file (request_id,label) into the feedback log.

keel feedback labels.csv [key=value ...]     (the log is under paths.logs)
"""

from collections.abc import Sequence

from keel.app import Summary, command_line, main, words_and_overrides
from keel.config import KeelConfig
from keel.errors import ConfigError
from keel.monitoring.feedback import describe, ingest

GROUPS = "dataset paths"  # the config groups it reads
WORDS = "FILE [key=value ...]"

# no square brackets: errors print as rich markup
USAGE = "keel feedback FILE key=value... (FILE: a .csv or .parquet with request_id and label)"


def feedback_job(cfg: KeelConfig, files: Sequence[str]) -> Summary:
    if len(files) != 1 or files[0].startswith("-"):
        got = " ".join(files) or "none"
        raise ConfigError(f"keel feedback takes one FILE (got: {got}); usage: {USAGE}")
    result = ingest(files[0], cfg.paths.logs)
    title = f"{result.accepted:,} labels from {files[0]} into the feedback log"
    return Summary(title, describe(result))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    files, overrides = words_and_overrides(command_line(__name__)[1])
    main(lambda cfg: feedback_job(cfg, files), overrides)


if __name__ == "__main__":
    command()

"""Batch inference over a dataset with Ray Data, written to parquet; `--explain` writes each
row's explanation beside its prediction."""

from keel.app import Flag, Summary, command_line, main
from keel.config import KeelConfig
from keel.serving.batch import describe, predict_dataset

GROUPS = "dataset serve paths ray"  # the config groups it reads
FLAGS = {
    "--explain": Flag(bool, "each row's attribution per input column too (as :explain answers)")
}


def predict(cfg: KeelConfig, explain: bool = False) -> Summary:
    out = predict_dataset(cfg, explain)
    return Summary(f"predicted {out.rows:,} rows with {out.version}", describe(out))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    flags, overrides = command_line(__name__)
    main(lambda cfg: predict(cfg, "--explain" in flags), overrides)


if __name__ == "__main__":
    command()

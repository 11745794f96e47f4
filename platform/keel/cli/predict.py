"""Batch inference over a dataset with Ray Data, written to parquet."""

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.serving.batch import describe, predict_dataset

GROUPS = "dataset serve paths ray"  # the config groups it reads


def predict(cfg: KeelConfig) -> Summary:
    out = predict_dataset(cfg)
    return Summary(f"predicted {out.rows:,} rows with {out.version}", describe(out))


def command() -> None:
    """The job with this process's command line (sys.argv[1:] are its arguments)."""
    main(predict)


if __name__ == "__main__":
    command()

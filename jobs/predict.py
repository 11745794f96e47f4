"""Batch inference over a dataset with Ray Data, written to parquet."""

from keel.app import Summary, main
from keel.config import KeelConfig
from keel.serving.batch import describe, predict_dataset


def predict(cfg: KeelConfig) -> Summary:
    out = predict_dataset(cfg)
    return Summary(f"predicted {out.rows:,} rows with {out.version}", describe(out))


if __name__ == "__main__":
    main(predict)

"""What a version stores for its explanations (bundle.File.explanation, File.importance): the
baseline row Integrated Gradients starts from, the mean of the training reference's features,
and the global importance, each input column's mean |attribution| over a sample of the
reference, as a table for the model card and a plot beside it."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from keel.config.schema import ExplainConfig
from keel.features import FeaturePipeline
from keel.models import Head

SHOWN = 15  # columns in the plot: the most important ones


def explanation(
    family: Any,
    fitted: Any,
    head: Head,
    features: FeaturePipeline,
    reference: pa.Table,
    target: str,
    settings: ExplainConfig,
) -> dict:
    """{"baseline": the mean feature row, "explained": what the attributions explain, "rows":
    how many reference rows the importance averages, "importance": {column: mean |attr|}}."""
    x = features.transform(reference)
    baseline = x.mean(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    sample = x[: settings.importance_rows]
    explained, mean = importance(
        family, fitted, head, features, sample, baseline, settings.steps, target
    )
    return {
        "baseline": baseline.astype(np.float64).tolist(),
        "explained": explained,
        "rows": len(sample),
        "importance": mean,
    }


def importance(
    family: Any,
    fitted: Any,
    head: Head,
    features: FeaturePipeline,
    x: np.ndarray,
    baseline: np.ndarray,
    steps: int,
    target: str,
) -> tuple[str, dict[str, float]]:
    """What is explained, and each input column's mean |attribution| over the feature rows
    `x`, most important first: the card's global importance, and monitoring's on a window."""
    why = family.explain(fitted, head, x, baseline, steps, target)
    folded = features.fold(why.attributions)
    mean = np.abs(folded).mean(axis=0) if len(x) else np.zeros(folded.shape[1])
    ranked = sorted(
        zip(features.input_columns, map(float, mean), strict=True), key=lambda kv: -kv[1]
    )
    return why.explained, dict(ranked)


def plot(importance: dict[str, float], title: str) -> bytes:
    """The global importance as a horizontal bar chart (PNG), most important on top."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers and CI
    import matplotlib.pyplot as plt

    shown = list(importance.items())[:SHOWN][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(shown) + 1.2), dpi=100)
    ax.barh([c for c, _ in shown], [v for _, v in shown], color="#4c78a8")
    ax.set_xlabel("mean |attribution|")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()

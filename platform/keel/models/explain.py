"""Why a model predicted what it did: an attribution per feature column of one explained output,
plus the base value they start from (attributions.sum(axis=1) + base == output).

The explained output is the model's margin, where contributions add up: the log-odds of the
positive class (binary), the logit of the predicted class (multiclass), the value in the
target's units (regression).

- torch networks: Integrated Gradients (Captum) from a baseline row (serving uses the mean of
  the training reference's features) to the row, `steps` Gauss-Legendre points on the path;
  the sum matches output - base to within the integral's error (1e-3 at 256 steps on keel's
  MLPs, the tests check).
- trees: exact TreeSHAP contributions from the library itself (XGBoost `pred_contribs`,
  LightGBM `pred_contrib`), whose base is the trees' expected margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.config.schema import Task

from .head import Head


@dataclass(frozen=True)
class Explanation:
    """Attributions of n rows' explained outputs to their f feature columns."""

    attributions: np.ndarray  # (n, f)
    base: np.ndarray  # (n,): the output the attributions start from
    output: np.ndarray  # (n,): the explained output (the margin, see the module's doc)
    explained: str  # what the output is, for a reader


def what(head: Head, target: str) -> str:
    """The explained output, in words."""
    task = Task(head.task)
    if task is Task.binary_classification:
        return f"log-odds of {target} = {head.labels[1]}"
    if task is Task.multiclass_classification:
        return f"logit of the predicted {target}"
    return target


def in_words(explanation: dict[str, Any], top: int = 3) -> str:
    """One served explanation (a prediction's `explanation`) as a line: the output, the base
    and the `top` largest attributions."""
    ranked = sorted(explanation["attributions"].items(), key=lambda kv: -abs(kv[1]))
    shown = ", ".join(f"{c} {v:+.3g}" for c, v in ranked[:top])
    rest = len(ranked) - top
    more = f" and {rest} more columns" if rest > 0 else ""
    return (
        f"{explanation['explained']}: {explanation['output']:.3g} = base "
        f"{explanation['base']:.3g} + {shown}{more}"
    )


def classes(head: Head, raw: np.ndarray) -> np.ndarray:
    """The output index each row explains: its predicted class for multiclass, else 0."""
    if Task(head.task) is Task.multiclass_classification:
        return np.asarray(raw).argmax(axis=1)
    return np.zeros(len(raw), np.int64)


def integrated_gradients(
    network: Any, head: Head, x: np.ndarray, baseline: np.ndarray, steps: int, target: str
) -> Explanation:
    """Integrated Gradients of the network's margin from `baseline` (f,) to each row of `x`."""
    import torch
    from captum.attr import IntegratedGradients

    network.eval()
    device = next(network.parameters(), torch.empty(0)).device
    rows = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)
    start = torch.as_tensor(np.asarray(baseline, np.float32), device=device).expand_as(rows)
    with torch.no_grad():
        margin, base_margin = network(rows).float(), network(start).float()
    picked = torch.as_tensor(classes(head, margin.cpu().numpy()), device=device)
    ig = IntegratedGradients(lambda inputs: network(inputs).float())
    attributions = ig.attribute(
        rows, baselines=start, target=picked, n_steps=steps, method="gausslegendre"
    )
    index = torch.arange(len(rows), device=device)
    output = margin[index, picked].cpu().numpy().astype(np.float64)
    base = base_margin[index, picked].cpu().numpy().astype(np.float64)
    scale, shift = _units(head)
    return Explanation(
        attributions.detach().cpu().numpy().astype(np.float64) * scale,
        base * scale + shift,
        output * scale + shift,
        what(head, target),
    )


def tree_contributions(contributions: np.ndarray, head: Head, target: str) -> Explanation:
    """TreeSHAP contributions as the libraries return them, (n, f + 1) with the bias last, or
    (n, k, f + 1) per class for multiclass: the predicted class's row of them."""
    c = np.asarray(contributions, np.float64)
    if c.ndim == 3:
        margins = c.sum(axis=2)
        c = c[np.arange(len(c)), margins.argmax(axis=1)]
    scale, shift = _units(head)
    attributions, bias = c[:, :-1] * scale, c[:, -1] * scale + shift
    return Explanation(attributions, bias, attributions.sum(axis=1) + bias, what(head, target))


def _units(head: Head) -> tuple[float, float]:
    """A regression margin is the scaled target: the head's scale and mean give the value."""
    if Task(head.task) is Task.regression:
        return head.scale, head.mean
    return 1.0, 0.0

"""A training run's checkpoints, the same for every model family: each is a directory of files
that the worker loops write with their reports and read back on a restart, and training/run.py
reads the best model and the history from the last one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

# The files: the model as it stands and the optimizer (to resume), the best model so far as the
# family's `save` writes it (what gets registered), and the progress with its history.
CURRENT, OPTIMIZER, BEST, PROGRESS = "current.pt", "optimizer.pt", "best.pt", "progress.json"


def new_progress() -> dict:
    """A run's progress before its first report ("epoch": the last one done)."""
    return {
        "epoch": -1,
        "best_val_loss": float("inf"),
        "bad_epochs": 0,
        "resumed_from": -1,
        "history": [],
    }


def report(metrics: dict, files: Callable[[], dict[str, bytes]] | None = None) -> None:
    """Report this worker's metrics; with `files`, rank 0 attaches a checkpoint of them (the
    other workers report the metrics alone, as Ray Train expects of every worker)."""
    import ray.train

    if files is None or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        for name, data in files().items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def workers() -> int:
    """The run's workers now (after a lost one is replaced, as many as before): each report
    says how many trained it."""
    import ray.train

    return ray.train.get_context().get_world_size()


def restore() -> tuple[dict[str, bytes], dict] | None:
    """The files of the checkpoint a restarted run resumes from, and its progress (marked as
    resumed); None on a first start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return None
    with checkpoint.as_directory() as d:
        files = {}
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                files[name] = f.read()
    progress = json.loads(files.pop(PROGRESS))
    progress["resumed_from"] = progress["epoch"]
    return files, progress


def progress_file(progress: dict) -> bytes:
    return json.dumps(progress).encode()

"""A training run's checkpoints, the same for every model family: each is a directory of files
that the worker loops write with their reports and read back on a restart, and training/run.py
reads the best model and the history from the last one. Also what a loop asks of its run: its
workers, its threads, whether it runs in this process."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable

from keel import storage

from .progress import epoch_line

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

    if in_process():
        _report_in_process(metrics, files)
        return
    if files is None or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        _write(d, files())
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def in_process() -> bool:
    """Whether this loop runs in Ray Train's local mode (train.num_workers=0): in the driver,
    with no controller to persist checkpoints or to call the run's callbacks."""
    import ray.train
    from ray.train.v2.api.context import LocalTrainContext

    return isinstance(ray.train.get_context(), LocalTrainContext)


def _report_in_process(metrics: dict, files: Callable[[], dict[str, bytes]] | None) -> None:
    """Local mode keeps only the last checkpoint object, not its files: they go to one local
    directory per run, rewritten at each checkpoint, which `keep` moves to the run's storage
    at the end. The epoch line is logged here, where the callback would have printed it."""
    import ray.train

    epoch_line(metrics)
    if files is None:
        ray.train.report(metrics)
        return
    d = local_directory(ray.train.get_context().get_experiment_name())
    os.makedirs(d, exist_ok=True)
    _write(d, files())
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def local_directory(run: str) -> str:
    """The one checkpoint directory of an in-process run (made at its first checkpoint)."""
    return os.path.join(tempfile.gettempdir(), f"keel-checkpoint-{run}")


def discard(run: str) -> None:
    """What a failed in-process run left: its local checkpoint directory, which nothing resumes
    from (local mode has no restarts) and `keep` never moved."""
    shutil.rmtree(local_directory(run), ignore_errors=True)


def keep(checkpoint, where: str):
    """An in-process run's last checkpoint copied to `where` (its storage: a path or a URI) and
    its local directory removed; the checkpoint there."""
    import ray.train

    for name in os.listdir(checkpoint.path):
        with open(os.path.join(checkpoint.path, name), "rb") as f:
            storage.write_bytes(storage.join(where, name), f.read())
    shutil.rmtree(checkpoint.path)
    filesystem, path = storage.resolve(where)
    return ray.train.Checkpoint(path, filesystem)


def _write(directory: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def workers() -> int:
    """The run's workers now (after a lost one is replaced, as many as before): each report
    says how many trained it."""
    import ray.train

    return ray.train.get_context().get_world_size()


def threads(config: dict) -> int:
    """A loop's compute threads: the CPUs Ray reserves for a worker (train.cpus_per_worker),
    at least one; Ray gives a worker as many (OMP_NUM_THREADS)."""
    return max(1, int(config["train"]["cpus_per_worker"]))


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

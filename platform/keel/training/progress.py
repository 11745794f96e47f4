"""Epoch lines on the console while Ray Train runs: keel's progress without Ray's chatter.

Ray Train calls a `UserCallback` in its controller actor, not in the driver, and with
`ray.verbose=false` no actor output reaches the console. Ray Train places its controller on
the driver's node, so the callback appends each report to a file there, and a thread in the
driver prints it as one line per epoch. (A Ray queue did this before: one more actor, a
process start of ~3 s here, on every run.)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from typing import Any

log = logging.getLogger("keel.training")


def reporter() -> tuple[Any, EpochLines]:
    """(the callback for RunConfig.callbacks, the printer to run around `fit`)."""
    fd, path = tempfile.mkstemp(prefix="keel-epochs-", suffix=".jsonl")
    os.close(fd)
    return _callback(path), EpochLines(path)


def _callback(path: str):
    from ray.train import UserCallback

    class ForwardReports(UserCallback):
        def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
            if metrics:  # rank 0's numbers; every rank reports the same epoch
                with open(path, "a") as f:
                    f.write(json.dumps(metrics[0]) + "\n")

    return ForwardReports()


class EpochLines(threading.Thread):
    """Prints `epoch 3/47  train_loss 0.4123  val_loss 0.3871  *` as reports arrive."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path, self.done = path, threading.Event()

    def run(self) -> None:
        with open(self.path) as f:
            pending = ""
            while True:
                finished = self.done.wait(0.2)
                pending += f.read()
                *lines, pending = pending.split("\n")  # a line still being written waits
                for line in lines:
                    epoch_line(json.loads(line))
                if finished:
                    return

    def __enter__(self) -> EpochLines:
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.done.set()
        self.join(timeout=5)
        os.unlink(self.path)


def epoch_line(m: dict[str, Any]) -> None:
    """Logs one report as its epoch's (or boosting round's) line."""
    best = "  *" if m["val_loss"] <= m["best_val_loss"] else ""
    stop = "  (early stop)" if m.get("stopped_early") else ""
    log.info(
        "%s %d/%d  train_loss %.4f  val_loss %.4f%s%s",
        m.get("unit", "epoch"),
        m["epoch"] + 1,
        m["epochs"],
        m["train_loss"],
        m["val_loss"],
        best,
        stop,
    )

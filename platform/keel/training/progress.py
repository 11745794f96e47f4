"""Epoch lines on the console while Ray Train runs: keel's progress without Ray's chatter.

Ray Train calls a `UserCallback` in its controller actor, not in the driver, and with
`ray.verbose=false` no actor output reaches the console. The callback therefore puts each
report on a Ray queue, and a thread in the driver prints it as one line per epoch.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("keel.training")


def reporter() -> tuple[Any, EpochLines]:
    """(the callback for RunConfig.callbacks, the printer to run around `fit`)."""
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    return _callback(queue), EpochLines(queue)


def _callback(queue):
    from ray.train import UserCallback

    class ForwardReports(UserCallback):
        def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
            if metrics:
                queue.put_nowait(metrics[0])  # rank 0's numbers; every rank reports the same epoch

    return ForwardReports()


class EpochLines(threading.Thread):
    """Prints `epoch 3/47  train_loss 0.4123  val_loss 0.3871  *` as reports arrive."""

    def __init__(self, queue) -> None:
        super().__init__(daemon=True)
        self.queue, self.done = queue, threading.Event()

    def run(self) -> None:
        from ray.util.queue import Empty

        while not (self.done.is_set() and self.queue.empty()):
            try:
                m = self.queue.get(timeout=0.5)
            except Empty:
                continue
            best = "  *" if m["val_loss"] <= m["best_val_loss"] else ""
            stop = "  (early stop)" if m.get("stopped_early") else ""
            log.info(
                "epoch %d/%d  train_loss %.4f  val_loss %.4f%s%s",
                m["epoch"] + 1,
                m["epochs"],
                m["train_loss"],
                m["val_loss"],
                best,
                stop,
            )

    def __enter__(self) -> EpochLines:
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.done.set()
        self.join(timeout=5)
        try:
            import ray

            ray.kill(self.queue.actor)
        except Exception:  # the queue actor is gone with Ray already
            pass

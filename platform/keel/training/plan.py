"""How long and in what batches to train, from the data's size: what `train.batch_size: null`
and `train.epochs: null` mean.

Defaults tuned for one size fail the others: 10 epochs of 256 rows are 10 optimizer steps on a
few hundred rows, and a fixed epoch count is hours on millions. keel instead aims at
`train.steps` optimizer steps (within [min_epochs, max_epochs]) and lets early stopping end
sooner, with a batch that grows with the rows each worker sees.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from keel.config.schema import TrainConfig

# Auto batch size: about this many batches per epoch, as a power of two within the bounds.
BATCHES_PER_EPOCH = 50
MIN_BATCH, MAX_BATCH = 16, 1024


@dataclass(frozen=True)
class Plan:
    rows: int  # training rows per worker
    batch_size: int
    epochs: int
    steps_per_epoch: int
    auto_batch: bool  # batch_size came from the data, not the config
    auto_epochs: bool  # epochs came from train.steps, not the config

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        how = "auto" if self.auto_batch else "set"
        until = f"up to {self.epochs}" if self.auto_epochs else f"{self.epochs}"
        return (
            f"{until} epochs x {self.steps_per_epoch} steps of {self.batch_size} rows "
            f"(batch {how}; {self.rows:,} rows per worker)"
        )


def auto_batch_size(rows: int) -> int:
    """A power of two near rows / BATCHES_PER_EPOCH, within [MIN_BATCH, MAX_BATCH]."""
    target = max(rows, 1) / BATCHES_PER_EPOCH
    return int(min(MAX_BATCH, max(MIN_BATCH, 2 ** math.floor(math.log2(max(target, 1))))))


def plan(train: TrainConfig, rows: int) -> Plan:
    """The batch size and epochs for `rows` training rows split over train.num_workers."""
    per_worker = math.ceil(rows / max(train.num_workers, 1))
    batch = train.batch_size or auto_batch_size(per_worker)
    steps = max(1, math.ceil(per_worker / batch))
    if train.epochs is not None:
        epochs = train.epochs
    else:
        wanted = math.ceil(train.steps / steps)
        epochs = min(train.max_epochs, max(train.min_epochs, wanted))
    return Plan(
        rows=per_worker,
        batch_size=batch,
        epochs=epochs,
        steps_per_epoch=steps,
        auto_batch=train.batch_size is None,
        auto_epochs=train.epochs is None,
    )

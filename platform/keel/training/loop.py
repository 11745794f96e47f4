"""The loop each Ray Train worker runs: shard -> batches -> DDP model -> metrics + checkpoint.

It receives a plain dict (never a DictConfig). Every epoch it reports train and validation
loss with a checkpoint holding the current state (to resume after a failure) and the best
weights so far (what gets registered), so early stopping never loses the best model.
"""

from __future__ import annotations

import contextlib
import functools
import io
import random
import time
from typing import Any

import numpy as np
import torch

from keel.models import Head, build

from .checkpoint import (
    BEST,
    CURRENT,
    OPTIMIZER,
    PROGRESS,
    in_process,
    new_progress,
    progress_file,
    report,
    restore,
    threads,
    workers,
)
from .shard import FEATURES, TARGET, read_arrays


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # Fused: one kernel updates every parameter. torch's default on CPU loops over the
    # parameters in Python, which on tabular MLPs cost ~17% of an epoch's samples/s at one
    # thread (benchmarks/train.py measures both); the update it computes is the same.
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, fused=True)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on GPU (precision auto or bf16); full precision on CPU."""
    use = device.type == "cuda" and precision in ("auto", "bf16")
    return torch.autocast("cuda", dtype=torch.bfloat16) if use else contextlib.nullcontext()


def train_loop(config: dict[str, Any]) -> None:
    with worker_threads(config):
        _train(config)


@contextlib.contextmanager
def worker_threads(config: dict[str, Any]):
    """In this process (train.num_workers=0), torch computes with a worker's threads, so the
    same seed gives the same model as on one worker (float sums depend on the threads), and
    the caller's setting comes back after. A worker already has them from Ray."""
    if not in_process():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads(config))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    train_cfg = config["train"]
    seed_everything(train_cfg["seed"])
    head = Head(**config["head"])
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(
        build(config["model"], config["in_features"], head.outputs)
    )
    optimizer = make_optimizer(
        train_cfg["optimizer"], model.parameters(), train_cfg["lr"], train_cfg["weight_decay"]
    )
    progress, best_state = new_progress(), None
    resumed = restore()
    if resumed:  # a restarted run (worker failure) continues where it stopped
        files, progress = resumed
        _unwrap(model).load_state_dict(_load(files[CURRENT]))
        optimizer.load_state_dict(_load(files[OPTIMIZER]))
        best_state = _load(files[BEST])

    plan = config["plan"]
    patience = train_cfg["early_stopping_patience"]
    batches = dict(batch_size=plan["batch_size"], dtypes=torch.float32, device=device)
    train_data = _Data.of(ray.train.get_dataset_shard("train"), config, device)
    val_data = _Data.of(ray.train.get_dataset_shard("val"), config, device)
    last_checkpoint = time.monotonic()
    for epoch in range(progress["epoch"] + 1, plan["epochs"]):
        started = time.perf_counter()
        model.train()
        total, rows = 0.0, 0
        for batch in train_data.batches(batches, shuffle_seed=train_cfg["seed"] + epoch):
            with autocast(device, train_cfg["precision"]):
                loss = head.loss(model(batch[FEATURES]), batch[TARGET])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch[TARGET])
            rows += len(batch[TARGET])
        seconds = time.perf_counter() - started
        val_loss = _validation_loss(model, head, val_data, batches, device, train_cfg["precision"])
        improved = val_loss < progress["best_val_loss"] - 1e-7
        if improved or best_state is None:
            best_state = {
                k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()
            }
        progress.update(
            epoch=epoch,
            best_val_loss=min(val_loss, progress["best_val_loss"]),
            bad_epochs=0 if improved else progress["bad_epochs"] + 1,
        )
        stop = bool(patience) and progress["bad_epochs"] >= patience
        metrics = {
            "epoch": epoch,
            "epochs": plan["epochs"],
            "train_loss": total / max(rows, 1),
            "val_loss": val_loss,
            "best_val_loss": progress["best_val_loss"],
            "samples_per_s": rows / seconds if seconds else 0.0,
            "train_seconds": seconds,
            "resumed_from": progress["resumed_from"],
            "workers": workers(),
            "stopped_early": stop,
        }
        progress["history"].append(metrics)
        # A checkpoint costs a write and a copy to storage: on small data that dominated the
        # epoch. One every checkpoint_seconds bounds what a failure loses; the last epoch always
        # has one, so the final checkpoint holds the best weights.
        final = stop or epoch == plan["epochs"] - 1
        due = time.monotonic() - last_checkpoint >= train_cfg["checkpoint_seconds"]
        if final or due:
            report(metrics, functools.partial(_files, model, optimizer, best_state, progress))
            last_checkpoint = time.monotonic()
        else:
            report(metrics)
        if stop:
            break


class _Data:
    """A worker's shard of encoded rows. Small shards are read once into tensors and shuffled
    here each epoch (a Ray Data pass per epoch cost ~1 s of fixed overhead, more than a small
    epoch's whole work); large ones stream from Ray Data with its local shuffle buffer."""

    def __init__(self, shard, tensors: dict[str, torch.Tensor] | None) -> None:
        self.shard, self.tensors = shard, tensors

    @classmethod
    def of(cls, shard, config: dict[str, Any], device) -> _Data:
        limit = config["train"]["in_memory_values"]
        if config["plan"]["rows"] * max(config["in_features"], 1) > limit:
            return cls(shard, None)
        x, y = read_arrays(shard, config["in_features"])
        return cls(
            shard,
            {FEATURES: torch.from_numpy(x).to(device), TARGET: torch.from_numpy(y).to(device)},
        )

    def batches(self, options: dict, shuffle_seed: int | None = None):
        size = options["batch_size"]
        if self.tensors is None:
            shuffle = (
                {}
                if shuffle_seed is None
                else {
                    "local_shuffle_buffer_size": 4 * size,
                    "local_shuffle_seed": shuffle_seed,
                }
            )
            yield from self.shard.iter_torch_batches(**options, **shuffle)
            return
        x, y = self.tensors[FEATURES], self.tensors[TARGET]
        if shuffle_seed is None:
            order = None
        else:
            generator = torch.Generator().manual_seed(shuffle_seed)
            order = torch.randperm(len(y), generator=generator).to(x.device)
        for i in range(0, len(y), size):
            idx = slice(i, i + size) if order is None else order[i : i + size]
            yield {FEATURES: x[idx], TARGET: y[idx]}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def _validation_loss(model, head, data: _Data, batches, device, precision) -> float:
    """Every worker sees the whole validation set (it is not split), so all agree on it."""
    model.eval()
    total, rows = 0.0, 0
    for batch in data.batches(batches):
        with autocast(device, precision):
            loss = head.loss(model(batch[FEATURES]), batch[TARGET])
        total += loss.item() * len(batch[TARGET])
        rows += len(batch[TARGET])
    return total / max(rows, 1)


def _files(model, optimizer, best_state, progress) -> dict[str, bytes]:
    return {
        CURRENT: _save(_unwrap(model).state_dict()),
        OPTIMIZER: _save(optimizer.state_dict()),
        BEST: _save(best_state),
        PROGRESS: progress_file(progress),
    }


def _save(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _load(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), weights_only=True)

"""The loop each Ray Train worker runs: shard -> batches -> DDP model -> metrics + checkpoint.

It receives a plain dict (never a DictConfig). Every epoch it reports train and validation
loss with a checkpoint holding the current state (to resume after a failure) and the best
weights so far (what gets registered), so early stopping never loses the best model.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from keel.models import Head, build

FEATURES, TARGET = "features", "target"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    return cls(params, lr=lr, weight_decay=weight_decay)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on GPU (precision auto or bf16); full precision on CPU."""
    use = device.type == "cuda" and precision in ("auto", "bf16")
    return torch.autocast("cuda", dtype=torch.bfloat16) if use else nullcontext()


def train_loop(config: dict[str, Any]) -> None:
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
    progress = {
        "epoch": -1,
        "best_val_loss": float("inf"),
        "bad_epochs": 0,
        "resumed_from": -1,
        "history": [],
    }
    best_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a restarted run (worker failure) continues where it stopped
        with checkpoint.as_directory() as d:
            _unwrap(model).load_state_dict(torch.load(f"{d}/model.pt", weights_only=True))
            optimizer.load_state_dict(torch.load(f"{d}/optimizer.pt", weights_only=True))
            best_state = torch.load(f"{d}/best.pt", weights_only=True)
            with open(f"{d}/progress.json") as f:
                progress = json.load(f)
            progress["resumed_from"] = progress["epoch"]

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    patience = train_cfg["early_stopping_patience"]
    batches = dict(batch_size=train_cfg["batch_size"], dtypes=torch.float32, device=device)
    for epoch in range(progress["epoch"] + 1, train_cfg["epochs"]):
        started = time.perf_counter()
        model.train()
        total, rows = 0.0, 0
        for batch in train_shard.iter_torch_batches(
            **batches,
            local_shuffle_buffer_size=4 * train_cfg["batch_size"],
            local_shuffle_seed=train_cfg["seed"] + epoch,
        ):
            with autocast(device, train_cfg["precision"]):
                loss = head.loss(model(batch[FEATURES]), batch[TARGET])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch[TARGET])
            rows += len(batch[TARGET])
        seconds = time.perf_counter() - started
        val_loss = _validation_loss(model, head, val_shard, batches, device, train_cfg["precision"])
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
        metrics = {
            "epoch": epoch,
            "train_loss": total / max(rows, 1),
            "val_loss": val_loss,
            "best_val_loss": progress["best_val_loss"],
            "samples_per_s": rows / seconds if seconds else 0.0,
            "train_seconds": seconds,
            "resumed_from": progress["resumed_from"],
        }
        progress["history"].append(metrics)
        _report(metrics, model, optimizer, best_state, progress)
        if patience and progress["bad_epochs"] >= patience:
            break


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def _validation_loss(model, head, shard, batches, device, precision) -> float:
    """Every worker sees the whole validation set (it is not split), so all agree on it."""
    model.eval()
    total, rows = 0.0, 0
    for batch in shard.iter_torch_batches(**batches):
        with autocast(device, precision):
            loss = head.loss(model(batch[FEATURES]), batch[TARGET])
        total += loss.item() * len(batch[TARGET])
        rows += len(batch[TARGET])
    return total / max(rows, 1)


def _report(metrics, model, optimizer, best_state, progress) -> None:
    import ray.train

    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save(_unwrap(model).state_dict(), os.path.join(d, "model.pt"))
        torch.save(optimizer.state_dict(), os.path.join(d, "optimizer.pt"))
        torch.save(best_state, os.path.join(d, "best.pt"))
        with open(os.path.join(d, "progress.json"), "w") as f:
            json.dump(progress, f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

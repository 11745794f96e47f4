"""The training benchmark: `keel train`'s Ray Train loop vs a plain PyTorch loop.

Both sides train the same model (same init seed, loss, optimizer, batch size and epochs) on the
same encoded features, prepared once by keel (validation, split, features) and not timed.
keel runs one TorchTrainer worker fed by Ray Data (its shard read once into tensors when under
`train.in_memory_values`, as here, then a seeded permutation per epoch); the baseline shuffles
in-memory tensors and slices batches, the fastest loop a user would write by hand, in the same
order, so both reach the same validation loss. Both validate every epoch, as keel does.

The optimizer: keel's is fused (one kernel over all parameters); the baseline's is torch's
default, as a user writes it (`torch.optim.AdamW(model.parameters(), lr=...)`). A third side,
"baseline fused", is the same loop with keel's fused optimizer, so the report shows how much of
the ratio the optimizer is.

Equal resources: keel's worker gets `bench.params.threads` CPUs (Ray sets its torch intra-op
threads to match) and the baseline runs with as many torch threads.

Reported: samples/s of the training passes (steady state: the median over epochs after the
first), the ratio keel / baseline, wall time per run, and keel's fixed cost: its wall time less
its training passes (Ray Train's controller and worker group start, the shard read, validation,
checkpoints, shutdown). Ray's own start-up is measured once and reported apart.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time

import numpy as np
import torch

from keel.app import Summary
from keel.config import KeelConfig, to_dict
from keel.models import build
from keel.storage import stamp
from keel.training.dataset import Prepared, prepare
from keel.training.loop import OPTIMIZERS, seed_everything
from keel.training.plan import plan
from keel.training.run import fit

from . import common

log = logging.getLogger(__name__)


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    cfg = dataclasses.replace(cfg, dataset=common.bench_dataset(cfg))
    cfg.train.early_stopping_patience = 0  # both sides run every epoch
    threads = int(cfg.bench.params.get("threads", 1))
    cfg.train.cpus_per_worker = threads  # Ray gives the worker as many intra-op threads
    log.info("preparing %s rows of %s (not timed) ...", f"{cfg.bench.rows:,}", cfg.dataset.name)
    data = prepare(cfg)
    arrays = split_arrays(data)
    runs = common.interleave(
        {
            "keel": lambda: run_keel(cfg, data),
            "baseline": lambda: run_baseline(cfg, data, arrays, threads),
            "baseline fused": lambda: run_baseline(cfg, data, arrays, threads, fused=True),
        },
        cfg.bench.repeats,
    )
    rows = len(arrays["train"][1])
    schedule = plan(cfg.train, rows)
    med = {side: common.medians(r) for side, r in runs.items()}
    ratio = med["keel"]["samples_per_s"] / med["baseline"]["samples_per_s"]
    ratio_fused = med["keel"]["samples_per_s"] / med["baseline fused"]["samples_per_s"]
    report = common.write_report(
        cfg,
        {
            "rows": rows,
            "epochs": schedule.epochs,
            "batch_size": schedule.batch_size,
            "model": to_dict(cfg.model),
            "threads": threads,
            **ray_times,
            "runs": runs,
            "median": med,
            "ratio_keel_over_baseline": ratio,
            "ratio_keel_over_baseline_fused": ratio_fused,
        },
    )
    s = Summary(
        f"bench train: {rows:,} training rows x {schedule.epochs} epochs, "
        f"median of {cfg.bench.repeats} interleaved runs"
    )
    for side in runs:
        m = med[side]
        s.add(f"{side}", f"{m['samples_per_s']:>10,.0f} samples/s   {m['wall_s']:6.1f} s per run")
    s.add(
        "keel / baseline", f"{ratio:.2f}x samples/s (steady-state epochs, {threads} thread(s) each)"
    )
    s.add("keel / baseline fused", f"{ratio_fused:.2f}x samples/s (the same optimizer on both)")
    s.add("keel fixed cost", f"{med['keel']['fixed_s']:.1f} s per run (wall less training passes)")
    s.add("ray start-up", f"{ray_times['ray_startup_s']:.1f} s (not in the figures above)")
    s.add("report", report)
    return s


def arrays_of(ds) -> tuple[np.ndarray, np.ndarray]:
    """A split's encoded features and targets as float32 arrays, in Ray Data's block order."""
    batches = list(ds.iter_batches(batch_format="numpy", batch_size=None))
    x = np.concatenate([b["features"] for b in batches]).astype(np.float32)
    return x, np.concatenate([b["target"] for b in batches]).astype(np.float32)


def split_arrays(data: Prepared) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training and validation splits' arrays, as every in-process baseline reads them."""
    return {name: arrays_of(data.datasets[name]) for name in ("train", "val")}


def _steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def run_keel(cfg: KeelConfig, data: Prepared) -> common.Phases:
    started = time.perf_counter()
    _, history, _ = fit(cfg, data, f"bench-train-{stamp()}")
    wall = time.perf_counter() - started
    return {
        "samples_per_s": _steady([h["samples_per_s"] for h in history]),
        "wall_s": wall,
        "fixed_s": wall - sum(h["train_seconds"] for h in history),
        "val_loss": history[-1]["val_loss"],
    }


def run_baseline(
    cfg: KeelConfig, data: Prepared, arrays: dict, threads: int, fused: bool = False
) -> common.Phases:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _baseline(cfg, data, arrays, fused)
    finally:
        torch.set_num_threads(before)


def _baseline(cfg: KeelConfig, data: Prepared, arrays: dict, fused: bool) -> common.Phases:
    started = time.perf_counter()
    t = cfg.train
    schedule = plan(t, len(arrays["train"][1]))
    seed_everything(t.seed)
    head = data.head
    model = build(to_dict(cfg.model), arrays["train"][0].shape[1], head.outputs)
    optimizer = OPTIMIZERS[t.optimizer](
        model.parameters(),
        lr=t.lr,
        weight_decay=t.weight_decay,
        **({"fused": True} if fused else {}),
    )
    x, y = (torch.from_numpy(a) for a in arrays["train"])
    vx, vy = (torch.from_numpy(a) for a in arrays["val"])
    rates, val_loss = [], float("nan")
    for epoch in range(schedule.epochs):
        epoch_start = time.perf_counter()
        model.train()
        # the order keel's loop draws: a reproducible permutation per epoch under the seed
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(t.seed + epoch))
        for i in range(0, len(x), schedule.batch_size):
            idx = order[i : i + schedule.batch_size]
            loss = head.loss(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(len(x) / (time.perf_counter() - epoch_start))
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(vx), schedule.batch_size):
                batch = slice(i, i + schedule.batch_size)
                total += head.loss(model(vx[batch]), vy[batch]).item() * len(vy[batch])
        val_loss = total / max(len(vy), 1)
    return {
        "samples_per_s": _steady(rates),
        "wall_s": time.perf_counter() - started,
        "val_loss": val_loss,
    }

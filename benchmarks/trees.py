"""The trees benchmark: `keel train model=xgboost` on Ray Train vs plain `xgboost.train`.

Both sides boost the same encoded features, prepared once by keel (validation, split, features)
and not timed, with the same parameters (keel's `xgboost_params`: objective, depth, learning
rate, histogram method, seed), the same number of threads and the same rounds (early stopping
off), and both evaluate the training and validation splits every round, as keel's loop does.
The baseline builds its DMatrix before its clock starts; keel's worker builds its own inside
the fixed cost.

Reported: seconds per boosting round in steady state (the median over chunks of
`report_every` rounds after the first, which holds the histogram sketch: keel's from its
reports, the baseline's from a clock callback that does nothing else), the ratio baseline /
keel (higher is better for keel), wall time per run, keel's fixed cost (wall less its rounds:
Ray Train's start, the shard read, DMatrix, checkpoints), and the test metric of both models,
which must agree within 0.005.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import statistics
import time

import numpy as np

from keel.app import Summary
from keel.config import KeelConfig, to_dict
from keel.config.schema import Family, Task
from keel.models.family import family
from keel.models.trees import finish
from keel.quality import PRIMARY
from keel.storage import stamp
from keel.training.boost import xgboost_params
from keel.training.dataset import Prepared, prepare
from keel.training.evaluate import evaluate
from keel.training.plan import plan
from keel.training.run import fit
from keel.training.trainer import loop_config

from . import common
from .train import split_arrays

log = logging.getLogger(__name__)

AGREE = 0.005  # the most the two test metrics may differ


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    cfg = dataclasses.replace(cfg, dataset=common.bench_dataset(cfg))
    threads = int(cfg.bench.params.get("threads", 1))
    cfg.train.cpus_per_worker = threads
    cfg.model = dataclasses.replace(cfg.model, name="xgboost", family=Family.xgboost)
    cfg.model.trees.early_stopping_rounds = 0  # both sides boost every round
    cfg.model.trees.rounds = int(cfg.bench.params.get("rounds", cfg.model.trees.rounds))
    cfg.model.trees.report_every = max(1, cfg.model.trees.rounds // 10)
    log.info("preparing %s rows of %s (not timed) ...", f"{cfg.bench.rows:,}", cfg.dataset.name)
    data = prepare(cfg)
    arrays = split_arrays(data)
    runs = common.interleave(
        {"keel": lambda: run_keel(cfg, data), "baseline": lambda: run_baseline(cfg, data, arrays)},
        cfg.bench.repeats,
    )
    med = {side: common.medians(r) for side, r in runs.items()}
    ratio = med["baseline"]["s_per_round"] / med["keel"]["s_per_round"]
    primary = PRIMARY[Task(cfg.dataset.task)]
    gap = abs(med["keel"]["test_metric"] - med["baseline"]["test_metric"])
    rows, rounds = len(arrays["train"][1]), cfg.model.trees.rounds
    report = common.write_report(
        cfg,
        {
            "rows": rows,
            "rounds": rounds,
            "threads": threads,
            "params": xgboost_params(_loop(cfg, data), gpu=False),
            **ray_times,
            "runs": runs,
            "median": med,
            "ratio_baseline_over_keel_s_per_round": ratio,
            "test_metric": primary,
        },
    )
    s = Summary(
        f"bench trees: XGBoost, {rows:,} training rows x {rounds} rounds, "
        f"median of {cfg.bench.repeats} interleaved runs"
    )
    for side in runs:
        m = med[side]
        s.add(
            side,
            f"{m['s_per_round'] * 1000:8.1f} ms per round   {m['wall_s']:6.1f} s per run   "
            f"test {primary} {m['test_metric']:.4f}",
        )
    s.add(
        "per round",
        f"{ratio:.2f}x plain xgboost.train's speed (target >= 0.9x), {threads} thread(s) each",
    )
    agree = "PASS" if gap <= AGREE else "FAIL"
    s.add("test metric", f"{primary} differs by {gap:.4f} (at most {AGREE}): {agree}")
    s.add("keel fixed cost", f"{med['keel']['fixed_s']:.1f} s per run (wall less its rounds)")
    s.add("ray start-up", f"{ray_times['ray_startup_s']:.1f} s (not in the figures above)")
    s.add("report", report)
    return s


def _loop(cfg: KeelConfig, data: Prepared) -> dict:
    """The plain dict keel's workers receive, from which both sides take their parameters."""
    rows = data.datasets["train"].count()
    return loop_config(cfg, len(data.features.output_columns), data.head, plan(cfg.train, rows))


def _test_metric(cfg: KeelConfig, data: Prepared, predict) -> float:
    return evaluate(predict, data.head, data.datasets["test"], cfg.dataset, data.y_train)["test"][
        PRIMARY[Task(cfg.dataset.task)]
    ]


def run_keel(cfg: KeelConfig, data: Prepared) -> common.Phases:
    started = time.perf_counter()
    best, history, where = fit(cfg, data, f"bench-trees-{stamp()}")
    wall = time.perf_counter() - started
    every = cfg.model.trees.report_every
    per_round = [h["train_seconds"] / every for h in history]
    fam = family(Family.xgboost)
    fitted = fam.load(
        to_dict(cfg.model), len(data.features.output_columns), data.head, best, where, "cpu"
    )
    return {
        "s_per_round": statistics.median(per_round[1:] or per_round),
        "wall_s": wall,
        "fixed_s": wall - sum(h["train_seconds"] for h in history),
        "test_metric": _test_metric(cfg, data, lambda x: fam.predict(fitted, data.head, x)),
    }


def run_baseline(cfg: KeelConfig, data: Prepared, arrays: dict) -> common.Phases:
    import xgboost as xgb

    params = xgboost_params(_loop(cfg, data), gpu=False)
    dtrain = xgb.DMatrix(arrays["train"][0], label=arrays["train"][1], nthread=params["nthread"])
    dval = xgb.DMatrix(arrays["val"][0], label=arrays["val"][1], nthread=params["nthread"])
    rounds, every = cfg.model.trees.rounds, cfg.model.trees.report_every
    marks = []  # the clock after each round, to measure as keel's reports do

    class Clock(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            marks.append(time.perf_counter())
            return False

    started = time.perf_counter()
    booster = xgb.train(
        params,
        dtrain,
        rounds,
        evals=[(dtrain, "train"), (dval, "val")],
        callbacks=[Clock()],
        verbose_eval=False,
    )
    seconds = time.perf_counter() - started
    # per round in chunks of report_every after the first, as keel's steady state
    ends = [started, *marks[every - 1 :: every]]
    chunks = [(b - a) / every for a, b in itertools.pairwise(ends)]

    def predict(x: np.ndarray) -> np.ndarray:  # the head's scaled target back, as keel's
        return finish(data.head, booster.inplace_predict(x))

    return {
        "s_per_round": statistics.median(chunks[1:] or chunks),
        "wall_s": seconds,
        "test_metric": _test_metric(cfg, data, predict),
    }

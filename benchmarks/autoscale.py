"""Autoscaling shown: a step load above one replica's capacity on keel's app, with replicas and
p99 against time. No baseline: this is a measurement (`bench=autoscale`).

The app serves one model fused (the ingress replica runs it), with `serve.autoscaling` from
bench.params: delays of seconds, so that one run takes about a minute. Serve's status is read
every half second for the running replicas; p99 is computed per window of answers. The run
writes its timeline as JSON and a plot of both against time (PNG) beside it. The autoscaling
test (tests/integration/test_autoscaling.py) runs `step` and asserts on its Timeline.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from typing import Any

import numpy as np

from keel.app import Summary
from keel.config import KeelConfig
from keel.errors import ConfigError
from keel.serving import service
from keel.storage import join

from . import common, loadgen

PARAMS = (
    "operation",
    "rows_per_request",
    "concurrency",
    "load_s",
    "idle_before_s",
    "idle_after_s",
    "window_s",
    "autoscaling",
)
SAMPLE_S = 0.5  # how often Serve's status is read
SLICE_S = 2.0  # the load runs in slices of this long (see step)


@dataclasses.dataclass
class Timeline:
    """One step load: times are seconds from the load's start (negative: before it)."""

    replicas: list[tuple[float, int]]  # (time, running replicas)
    answers: list[tuple[float, float]]  # (time answered, latency ms), successful requests
    load_s: float  # how long the load ran
    failed: int  # requests that got no 2xx

    def most(self) -> int:
        return max(n for _, n in self.replicas)

    def scaled_up_s(self) -> float | None:
        """From the load's start until more replicas than at its start ran."""
        first = self.at(0.0)
        return next((t for t, n in self.replicas if t >= 0 and n > first), None)

    def scaled_down_s(self) -> float | None:
        """From the load's end until the replicas were back to what ran before it, for good."""
        before = self.at(0.0)
        after = [(t, n) for t, n in self.replicas if t >= self.load_s]
        for i, (t, _) in enumerate(after):
            if all(n == before for _, n in after[i:]):
                return t - self.load_s
        return None

    def at(self, when: float) -> int:
        """Replicas running at `when` (the last sample before it)."""
        return [n for t, n in self.replicas if t <= when][-1]

    def p99(self, start: float, end: float) -> float:
        """p99 latency (ms) of the requests answered in [start, end)."""
        latencies = [ms for t, ms in self.answers if start <= t < end]
        return float(np.percentile(latencies, 99)) if latencies else float("nan")

    def windows(self, width: float) -> list[tuple[float, float]]:
        """(window's end, p99) for each `width`-second window of the load."""
        ends = np.arange(width, self.load_s + width / 2, width)
        return [(float(e), self.p99(e - width, e)) for e in ends]


def step(
    base: str,
    model: str,
    payloads: list[bytes],
    app: str,
    *,
    operation: str,
    concurrency: int,
    load_s: float,
    idle_before_s: float,
    idle_after_s: float,
    until_scaled: bool = False,
) -> Timeline:
    """Idle, then `concurrency` closed-loop callers for `load_s` (or, `until_scaled`, until
    more replicas run than before, at most `load_s`), then idle until the replicas are back to
    where they started (at most `idle_after_s`)."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    origin = time.monotonic() + idle_before_s  # the load's start

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - origin, running(app)))
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(max(0.0, origin - time.monotonic()))
    url = f"{base}/v1/models/{model}:{operation}"
    answers: list[tuple[float, float]] = []
    failed = 0
    while (now := time.monotonic() - origin) < load_s:
        # in slices, so that the load can stop once scaled: callers reconnect between them
        chunk = min(SLICE_S, load_s - now)
        result = loadgen.run(url, payloads, concurrency, total=1 << 30, seconds=chunk)
        answers += [
            (now + t, ms) for t, ms in zip(result.answered_s, result.latencies_ms, strict=True)
        ]
        failed += result.failed
        if until_scaled and samples[-1][1] > samples[0][1]:
            break
    load_end = time.monotonic() - origin
    deadline = time.monotonic() + idle_after_s
    time.sleep(2 * SAMPLE_S)
    while time.monotonic() < deadline and samples[-1][1] != samples[0][1]:
        time.sleep(SAMPLE_S)
    time.sleep(2 * SAMPLE_S)  # a few samples at the floor
    stop.set()
    sampler.join()
    return Timeline(samples, answers, load_end, failed)


def running(app: str) -> int:
    """The app's running replicas, over its deployments (fused: the ingress alone)."""
    from ray import serve

    deployments = serve.status().applications[app].deployments.values()
    return sum(d.replica_states.get("RUNNING", 0) for d in deployments)


# ----------------------------------------------------------------------------- bench=autoscale


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    from keel.training.run import train

    from .serve_models import make_payloads

    p = cfg.bench.params
    if missing := [k for k in PARAMS if k not in p]:
        raise ConfigError(f"bench.params: missing {missing} (see conf/bench/autoscale.yaml)")
    # a look-back of seconds (what the autoscaler averages over): Ray warns when it is below
    # the deprecated metrics_interval_s (10 s), which keel does not set
    warnings.filterwarnings("ignore", "`look_back_period_s`", FutureWarning)
    work = dataclasses.replace(
        cfg,
        dataset=common.bench_dataset(cfg),
        paths=common.paths_under(join(cfg.paths.root, "bench", "autoscale")),
    )
    version = train(work).version.version
    model = work.dataset.name
    work = app_config(work, model, version, p["autoscaling"])
    payloads = make_payloads(work, [p["rows_per_request"]], 64)[p["rows_per_request"]]
    base = service.start(work)
    try:
        timeline = step(
            base,
            model,
            payloads,
            work.serve.app_name,
            operation=p["operation"],
            concurrency=p["concurrency"],
            load_s=p["load_s"],
            idle_before_s=p["idle_before_s"],
            idle_after_s=p["idle_after_s"],
        )
    finally:
        service.stop(work)
    figures = describe(timeline, p["window_s"], work.slo.latency_p99_ms)
    report = common.write_report(
        cfg, {"params": p, **ray_times, **figures, "timeline": dataclasses.asdict(timeline)}
    )
    plot = report.removesuffix(".json") + ".png"
    draw(timeline, p["window_s"], work.slo.latency_p99_ms, plot)
    s = Summary(f"bench autoscale: {model} v{version}, concurrency {p['concurrency']}")
    for key, value in figures.items():
        s.add(key.replace("_", " "), value)
    return s.add("report", report).add("plot", plot)


def app_config(cfg: KeelConfig, model: str, version: int, autoscaling: dict) -> KeelConfig:
    """cfg serving `model` at `version` alone, fused, with `autoscaling`."""
    from keel.config.schema import ServedModel

    template = cfg.serve.models.get(model, ServedModel())
    served = ServedModel(version=str(version), postprocess=template.postprocess)
    return dataclasses.replace(
        cfg,
        serve=dataclasses.replace(
            cfg.serve, models={model: served}, fused=True, autoscaling=dict(autoscaling)
        ),
    )


def describe(timeline: Timeline, window_s: float, slo_ms: float) -> dict[str, Any]:
    """The figures: time to scale up and down, replicas, p99 before, during and after."""
    up = timeline.scaled_up_s()
    return {
        "replicas_before": timeline.at(0.0),
        "replicas_most": timeline.most(),
        "scaled_up_after_s": up,
        "scaled_down_after_load_s": timeline.scaled_down_s(),
        "p99_first_window_ms": timeline.p99(0, window_s),
        "p99_last_window_ms": timeline.p99(timeline.load_s - window_s, timeline.load_s),
        "slo_latency_p99_ms": slo_ms,
        "failed_requests": timeline.failed,
        "answered_requests": len(timeline.answers),
    }


def draw(timeline: Timeline, window_s: float, slo_ms: float, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(8, 3.6))
    t, n = zip(*timeline.replicas, strict=True)
    left.step(t, n, where="post", color="tab:blue", label="running replicas")
    left.set_xlabel("seconds from the load's start")
    left.set_ylabel("replicas", color="tab:blue")
    left.set_ylim(0, max(n) + 1)
    left.axvspan(0, timeline.load_s, color="0.92", label="load")
    right = left.twinx()
    w, p99 = zip(*timeline.windows(window_s), strict=True)
    right.plot(w, p99, "o-", color="tab:red", label=f"p99 per {window_s:g} s")
    right.axhline(slo_ms, color="tab:red", linestyle="--", linewidth=1, label="slo.latency_p99_ms")
    right.set_ylabel("p99 (ms)", color="tab:red")
    right.set_ylim(0, max(max(p99), slo_ms) * 1.15)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)

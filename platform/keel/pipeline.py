"""The whole loop on the demo datasets, on one embedded Ray (what `make demo` runs).

validate -> train both demo models -> serve -> normal traffic -> monitor passes -> drifted
churn traffic (covariate shift on three columns and a concept shift) with feedback -> monitor
fails and names the drifted columns -> retrain -> the challenger is promoted -> the running
app switches to it without a failed request -> monitor on new traffic passes -> a summary.

Every step is the same code as its own job (`keel train`, `keel simulate`, `keel monitor`,
`keel retrain`); this module only orders them and checks that each did what the loop needs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from keel import prediction_log as plog
from keel import runtime, tracking
from keel.app import Summary
from keel.config import KeelConfig, load, to_dict
from keel.data.batch import json_rows
from keel.errors import KeelError
from keel.monitoring.logs import wait_logged
from keel.monitoring.monitor import Monitored
from keel.monitoring.monitor import run as monitor
from keel.monitoring.retrain import retrain
from keel.registry import Registry
from keel.serving import service
from keel.traffic import simulate, traffic_table
from keel.training.dataset import prepare
from keel.training.run import train

log = logging.getLogger(__name__)

DEMO = ("churn", "listings")
# The demo's drift: three churn inputs move (a third of its columns: above slo.max_drift_share)
# and the relation between inputs and churn flips. Under a concept shift old labels mislead,
# so the retraining keeps a fifth of the original rows and weighs recent ones three times.
DRIFT = (
    "+dataset.source.drift.covariate={age: 1.5, monthly_charges: 1.0, contract: 0.5}",
    "dataset.source.drift.concept=1.0",
)
RETRAIN = ("monitor.retrain.original_fraction=0.2", "monitor.retrain.recent_weight=3")
LOOP = ("serve.log.flush_seconds=1",)  # monitoring reads the logs seconds after the traffic


class PipelineError(KeelError):
    """A stage of the loop did not do what the next one needs."""


@dataclass
class Step:
    what: str
    seconds: float
    result: str


@dataclass
class Loop:
    cfgs: dict[str, KeelConfig]
    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def step(self, what: str, result: str, since: float) -> None:
        self.steps.append(Step(what, time.perf_counter() - since, result))
        log.info("[%5.1fs] %s: %s", time.perf_counter() - self.started, what, result)


def pipeline(overrides: Sequence[str]) -> Summary:
    base = [*LOOP, *RETRAIN, *overrides]
    cfgs = {name: load([*base, f"experiment={name}"]) for name in DEMO}
    first = cfgs[DEMO[0]]
    runtime.ensure(first)
    loop = Loop(cfgs)
    versions = {name: _train(loop, name) for name in DEMO}
    t = time.perf_counter()
    url = service.start(first)
    loop.step("serve", url, t)
    try:
        for name in DEMO:
            _expect(loop, name, _traffic(loop, name, seed=2_000), passes=True)
        drifted = load([*base, "experiment=churn", *DRIFT])
        verdict = _expect(loop, "churn", _traffic(loop, "churn", 3_000, drifted), passes=False)
        switch = _retrain_and_switch(loop, drifted, url)
        after = _expect(loop, "churn", _traffic(loop, "churn", 4_000, drifted), passes=True)
    finally:
        service.stop(first)
    return _summary(loop, url, versions, verdict, switch, after)


def _train(loop: Loop, name: str) -> int:
    cfg, t = loop.cfgs[name], time.perf_counter()
    data = prepare(cfg)
    trained = train(cfg, data)
    tracking.log_training(
        cfg,
        to_dict(cfg),
        trained.history,
        trained.metrics,
        trained.version.version,
        trained.promoted,
    )
    primary = trained.metrics["primary_metric"]
    score = trained.metrics["test"][primary]
    loop.step(f"train {name}", f"v{trained.version.version} {primary} {score:.3f}", t)
    return Registry(cfg.paths.registry).stages(name)["production"]


def _traffic(loop: Loop, name: str, seed: int, cfg: KeelConfig | None = None) -> tuple:
    """Send traffic and wait until the app has written it: (window, traffic)."""
    cfg = _seeded(cfg or loop.cfgs[name], seed)
    t = time.perf_counter()
    start = plog.now()
    sent = simulate(cfg)
    if sent.failed_requests:
        raise PipelineError(f"{sent.failed_requests} {name} requests failed: {sent.first_errors}")
    window = wait_logged(cfg, name, start, sent.rows_served)
    loop.step(f"traffic {name} seed {seed}", f"{sent.rows_served:,} rows served, labels sent", t)
    return window, sent, cfg


def _seeded(cfg: KeelConfig, seed: int) -> KeelConfig:
    return dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, seed=seed))


def _expect(loop: Loop, name: str, traffic: tuple, passes: bool) -> Monitored:
    window, _, cfg = traffic
    t = time.perf_counter()
    m = monitor(cfg, name, window)
    result = (
        f"{m.verdict['status']}; drifted: {m.verdict['checks']['drift'].get('drifted_columns')}"
    )
    loop.step(f"monitor {name} v{m.version}", result, t)
    if m.passed != passes:
        want = "pass" if passes else "fail"
        raise PipelineError(
            f"monitor {name} v{m.version} should {want} here but gave {m.verdict['status']}: "
            f"{m.verdict['reasons'] or 'no failed check'} (report: {m.files.get('html')})"
        )
    return m


@dataclass
class Switch:
    before: int
    after: int
    seconds: float
    probes: int
    failed: int
    decision: str


def _retrain_and_switch(loop: Loop, cfg: KeelConfig, url: str) -> Switch:
    """Retrain while probes hit the app; wait until the app answers with the new version."""
    registry = Registry(cfg.paths.registry)
    before = registry.stages("churn")["production"]
    probe = _Probe(url, cfg)
    probe.start()
    t = time.perf_counter()
    try:
        decision = retrain(cfg, [*RETRAIN, *DRIFT])
        loop.step("retrain churn", decision.reason, t)
        if not decision.promoted:
            raise PipelineError(f"the challenger was not promoted: {decision.reason}")
        after = registry.stages("churn")["production"]
        switched = time.perf_counter()
        probe.wait_for(after, timeout_s=120)
        seconds = time.perf_counter() - switched
    finally:
        probe.stop()
    result = f"v{before} -> v{after}; {probe.sent} probe requests, {probe.failed} failed"
    loop.step("switch (promotion to first answer)", result, switched)
    if probe.failed:
        raise PipelineError(f"{probe.failed} of {probe.sent} requests failed during the switch")
    return Switch(before, after, seconds, probe.sent, probe.failed, decision.path)


class _Probe(threading.Thread):
    """One-row requests in a loop: which version answers, and whether any request fails."""

    def __init__(self, url: str, cfg: KeelConfig):
        super().__init__(daemon=True)
        row = traffic_table(_seeded(cfg, 5_000)).slice(0, 1)
        self.body = {"instances": json_rows(row, drop=(cfg.dataset.target,))}
        self.endpoint = f"{url}/v1/models/churn:predict"
        self.sent = self.failed = 0
        self.version: int | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        with requests.Session() as s:
            while not self.halt.is_set():
                self.sent += 1
                try:
                    r = s.post(self.endpoint, json=self.body, timeout=10)
                    r.raise_for_status()
                    self.version = r.json()["version"]
                except (requests.RequestException, KeyError, ValueError):
                    self.failed += 1
                time.sleep(0.05)

    def wait_for(self, version: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.version != version:
            if time.monotonic() > deadline:
                raise PipelineError(f"the app still answers with v{self.version}, not v{version}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


def _summary(
    loop: Loop, url: str, versions: dict, drifted: Monitored, switch: Switch, after: Monitored
) -> Summary:
    total = time.perf_counter() - loop.started
    summary = Summary(f"keel pipeline: the whole loop in {total:.0f} s")
    for s in loop.steps:
        summary.add(f"{s.what} ({s.seconds:.1f} s)", s.result)
    where = loop.cfgs[DEMO[0]].paths.registry
    registry = Registry(where)
    for name in DEMO:
        stages = registry.stages(name)
        summary.add(
            f"registry {name}", f"production v{stages['production']} (was v{versions[name]})"
        )
    summary.add("registry", where)
    summary.add("drift caught", "; ".join(drifted.verdict["reasons"]))
    summary.add("drift report", drifted.files.get("html", "-"))
    summary.add("retrain decision", switch.decision)
    summary.add(
        "after retraining",
        f"v{after.version} {after.verdict['status']}: {after.files.get('html', '-')}",
    )
    summary.add("service", f"{url} (stopped at the end; keel serve keeps it running)")
    return summary

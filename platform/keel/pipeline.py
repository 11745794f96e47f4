"""The whole loop on one embedded Ray: the demo datasets (what `make demo` runs), or any one
dataset with `keel pipeline experiment=NAME`.

validate -> train -> serve -> normal traffic -> monitor passes -> drifted traffic (covariate
shift on enough columns to break slo.max_drift_share, and a concept shift) with feedback ->
monitor fails and names the drifted columns -> retrain -> the challenger is promoted -> the
running app switches to it without a failed request -> monitor on new traffic passes -> a
summary.

Every step is the same code as its own job (`keel train`, `keel simulate`, `keel monitor`,
`keel retrain`); this module only orders them and checks that each did what the loop needs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from keel import prediction_log as plog
from keel import runtime, tracking
from keel.app import Summary
from keel.config import KeelConfig, load
from keel.config.schema import ColumnType
from keel.data.batch import json_rows
from keel.errors import KeelError
from keel.models.explain import in_words
from keel.monitoring.logs import wait_logged
from keel.monitoring.monitor import Monitored, Served
from keel.monitoring.monitor import run as monitor
from keel.monitoring.retrain import retrain
from keel.registry import File, Registry
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
# Another dataset's drift: numeric inputs move this many standard deviations, categorical ones
# move this share of rows to their rarest value.
NUMERIC_SHIFT, CATEGORY_SHIFT = 1.5, 0.5
FIRST_SEED = 2_000  # traffic seeds: normal, drifted, after retraining (+1000 each)


NUMERIC_TYPES = (ColumnType.int, ColumnType.float)


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

    def note(self, what: str, result: str) -> None:
        self.step(what, result, time.perf_counter())


@dataclass(frozen=True)
class Target:
    """What the loop runs on: the models it trains and serves, and the one it drifts."""

    models: tuple[str, ...]
    drifted: str
    experiment: str | None  # None: the demo datasets


def pipeline(overrides: Sequence[str]) -> Summary:
    experiment = _experiment(overrides)
    base = [*LOOP, *RETRAIN, *[o for o in overrides if not _is_experiment(o)]]
    if experiment is None:
        cfgs = {name: load([*base, f"experiment={name}"]) for name in DEMO}
        target = Target(DEMO, "churn", None)
    else:
        cfg = load([*base, f"experiment={experiment}"])
        base.append(f"experiment={experiment}")
        cfgs = {cfg.dataset.name: cfg}
        target = Target((cfg.dataset.name,), cfg.dataset.name, experiment)
    first = cfgs[target.models[0]]
    runtime.ensure(first)
    loop = Loop(cfgs)
    trained = {name: _train(loop, name) for name in target.models}
    versions = {name: champion.version for name, champion in trained.items()}
    drift = DRIFT
    if target.experiment is not None:
        every, drifted_rows = _small_data(loop, first, trained[target.drifted])
        base += every
        loop.cfgs = cfgs = {target.drifted: load(base)}
        drift = _drift(first, target.drifted)
        loop.note("drift planted", "; ".join(drift))
        drift = (*drift, *drifted_rows)
    t = time.perf_counter()
    try:  # an app that never became ready is deleted too
        url = service.start(cfgs[target.models[0]])
        loop.step("serve", url, t)
        for name in target.models:
            _expect(loop, name, _traffic(loop, name, seed=FIRST_SEED), passes=True)
        _explain_one(loop, url, cfgs[target.drifted])
        drifted_cfg = load([*_for(base, target, target.drifted), *drift])
        seed = FIRST_SEED + 1_000
        verdict = _expect(
            loop, target.drifted, _traffic(loop, target.drifted, seed, drifted_cfg), passes=False
        )
        switch = _retrain_and_switch(loop, drifted_cfg, url, drift)
        after = _expect(
            loop,
            target.drifted,
            _traffic(loop, target.drifted, seed + 1_000, drifted_cfg),
            passes=True,
        )
    finally:
        service.stop(first)
    return _summary(loop, url, versions, verdict, switch, after)


def _experiment(overrides: Sequence[str]) -> str | None:
    """The experiment named on the command line (`experiment=NAME`), if any."""
    named = [o.split("=", 1)[1] for o in overrides if _is_experiment(o)]
    return named[-1] if named else None


def _is_experiment(override: str) -> bool:
    return override.lstrip("+~").startswith("experiment=")


def _for(base: list[str], target: Target, name: str) -> list[str]:
    return base if target.experiment is not None else [*base, f"experiment={name}"]


def _small_data(loop: Loop, cfg: KeelConfig, champion: Champion) -> tuple[list[str], list[str]]:
    """Overrides that let the loop judge a small file: (every round's, the drifted rounds').

    The first round replays the test split without repeating rows (repeats would make a drift
    test see a small sample as a large one); the monitor and retraining minimums shrink to what
    that traffic can give, and retraining learns from the recent rows alone. The drifted rounds
    replay every valid row of the file: the challenger learns the flipped concept from them,
    and a test split's few dozen rows left it too few to learn from (rentals: 48 distinct
    training rows, R2 from -0.03 to 0.40 with the machine)."""
    rows = min(cfg.simulate.rows, champion.test_rows)
    out = [f"simulate.rows={rows}"]
    enough = max(20, rows // 2)
    if rows < cfg.monitor.min_rows:
        out.append(f"monitor.min_rows={enough}")
    if rows < cfg.monitor.retrain.min_labeled:
        # A few dozen recent rows: any share of the original rows, labelled under the concept
        # the loop has just flipped, outweighs them, and the challenger learns neither.
        out += [f"monitor.retrain.min_labeled={enough}", "monitor.retrain.original_fraction=0"]
    if len(out) == 1 and rows == cfg.simulate.rows:
        return out, []
    drifted = [
        f"simulate.path={cfg.dataset.source.path}",
        f"simulate.rows={min(cfg.simulate.rows, champion.rows)}",
    ]
    loop.note(
        "small data",
        f"{champion.test_rows} test rows of {champion.rows}: {' '.join(out)}; "
        f"drifted rounds: {' '.join(drifted)}",
    )
    return out, drifted


def _drift(cfg: KeelConfig, model: str) -> tuple[str, ...]:
    """Covariate shift on the first monitored inputs, enough of them to exceed
    slo.max_drift_share, and a full concept shift."""
    registry = Registry(cfg.paths.registry)
    columns = Served.load(registry, registry.get(model, "production")).columns
    count = min(len(columns), math.floor(cfg.slo.max_drift_share * len(columns)) + 1)
    moved = {
        name: NUMERIC_SHIFT if ColumnType(spec.type) in NUMERIC_TYPES else CATEGORY_SHIFT
        for name, spec in list(columns.items())[:count]
    }
    shifts = ", ".join(f"{name}: {shift}" for name, shift in moved.items())
    return (f"+dataset.source.drift.covariate={{{shifts}}}", "dataset.source.drift.concept=1.0")


@dataclass(frozen=True)
class Champion:
    """The version a model's loop starts from, and the rows its file gave."""

    version: int
    test_rows: int  # in the test split: traffic the version never trained on
    rows: int  # valid rows in all


def _train(loop: Loop, name: str) -> Champion:
    """Train and register the version the loop serves first."""
    cfg, t = loop.cfgs[name], time.perf_counter()
    data = prepare(cfg)
    trained = train(cfg, data)
    tracking.log_trained(cfg, trained)
    primary = trained.metrics["primary_metric"]
    score, base = trained.metrics["test"][primary], trained.metrics["baseline"][primary]
    result = f"v{trained.version.version} {primary} {score:.3f} (baseline {base:.3f})"
    loop.step(f"train {name}", result, t)
    registry, floor = Registry(cfg.paths.registry), dict(cfg.slo.quality_floor)
    if registry.floor_failures(trained.version, floor):
        raise PipelineError(
            f"{name} v{trained.version.version} misses slo.quality_floor "
            f"{floor} ({primary} {score:.3f}): nothing to serve; "
            f"see {trained.version.uri(File.card)}"
        )
    # A rerun finds an earlier loop's registry, whose production is that loop's retrained
    # challenger, fitted to its drifted traffic: normal traffic then failed the first monitor
    # (`make demo` twice). The loop starts from the version it has just trained.
    registry.promote(
        name,
        trained.version.version,
        floor=floor,
        reason="keel pipeline: the loop starts from the version it trained",
    )
    return Champion(trained.version.version, trained.metrics["rows"], data.validation.valid_rows)


def _traffic(loop: Loop, name: str, seed: int, cfg: KeelConfig | None = None) -> tuple:
    """Send traffic and wait until the app has written it: (window, traffic)."""
    cfg = _seeded(cfg or loop.cfgs[name], seed)
    t = time.perf_counter()
    start = plog.now()
    sent = simulate(cfg)
    if sent.failed_requests:
        raise PipelineError(f"{sent.failed_requests} {name} requests failed: {sent.first_errors}")
    window = wait_logged(cfg, name, start, sent.rows_served, sent.feedback_posted)
    loop.step(f"traffic {name} seed {seed}", f"{sent.rows_served:,} rows served, labels sent", t)
    return window, sent, cfg


def _seeded(cfg: KeelConfig, seed: int) -> KeelConfig:
    return dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, seed=seed))


def _expect(loop: Loop, name: str, traffic: tuple, passes: bool) -> Monitored:
    window, _, cfg = traffic
    t = time.perf_counter()
    m = monitor(cfg, name, window)
    result = f"{m.verdict.status}; drifted: {m.verdict.drift.drifted_columns}"
    if (estimate := m.verdict.estimate) is not None:
        result += f"; {estimate.headline()}"
    loop.step(f"monitor {name} v{m.version}", result, t)
    if m.passed != passes:
        want = "pass" if passes else "fail"
        raise PipelineError(
            f"monitor {name} v{m.version} should {want} here but gave {m.verdict.status}: "
            f"{m.verdict.reasons or 'no failed check'} (report: {m.files.get('html')})"
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


def _retrain_and_switch(loop: Loop, cfg: KeelConfig, url: str, drift: Sequence[str]) -> Switch:
    """Retrain while probes hit the app; wait until the app answers with the new version."""
    registry = Registry(cfg.paths.registry)
    model = cfg.dataset.name
    before = registry.stages(model).production
    probe = _Probe(url, cfg)
    probe.start()
    t = time.perf_counter()
    try:
        decision = retrain(cfg, [*RETRAIN, *drift])
        loop.step(f"retrain {model}", decision.reason, t)
        if not decision.promoted:
            raise PipelineError(f"the challenger was not promoted: {decision.reason}")
        after = registry.stages(model).production
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


def _one_request(cfg: KeelConfig) -> dict:
    """A predict body of one row of the dataset's traffic."""
    row = traffic_table(_seeded(cfg, 5_000)).slice(0, 1)
    return {"instances": json_rows(row, drop=(cfg.dataset.target,))}


def _explain_one(loop: Loop, url: str, cfg: KeelConfig) -> None:
    """Ask the running app why it answered one request (POST :explain)."""
    t, name = time.perf_counter(), cfg.dataset.name
    r = requests.post(f"{url}/v1/models/{name}:explain", json=_one_request(cfg), timeout=60)
    if r.status_code != 200:
        raise PipelineError(f"{name}:explain answered {r.status_code}: {r.text[:300]}")
    answer = r.json()
    why = in_words(answer["predictions"][0]["explanation"])
    loop.step(f"explain one {name} request", f"v{answer['version']} {why}", t)


class _Probe(threading.Thread):
    """One-row requests in a loop: which version answers, and whether any request fails."""

    def __init__(self, url: str, cfg: KeelConfig):
        super().__init__(daemon=True)
        self.body = _one_request(cfg)
        self.endpoint = f"{url}/v1/models/{cfg.dataset.name}:predict"
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
    where = next(iter(loop.cfgs.values())).paths.registry
    registry = Registry(where)
    for name in versions:
        production = registry.stages(name).production
        summary.add(f"registry {name}", f"production v{production} (was v{versions[name]})")
    summary.add("registry", where)
    summary.add("drift caught", "; ".join(drifted.verdict.reasons))
    summary.add("drift report", drifted.files.get("html", "-"))
    if (estimate := drifted.verdict.estimate) is not None:
        why = estimate.disagreement or estimate.blind_to
        summary.add("quality without labels", f"{estimate.headline()}: {why}")
    if (attribution := drifted.verdict.attribution) is not None:
        summary.add("explanations moved", attribution.headline())
    summary.add("retrain decision", switch.decision)
    summary.add(
        "after retraining",
        f"v{after.version} {after.verdict.status}: {after.files.get('html', '-')}",
    )
    summary.add("service", f"{url} (stopped at the end; keel serve keeps it running)")
    return summary

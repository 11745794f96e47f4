"""`keel simulate`: traffic for a running app, then its ground truth as feedback.

A synthetic dataset's rows come from its generator under the traffic's own seed (not the
training data's). A file dataset's rows are replayed: rows the model never trained on (the
test split, or the file at simulate.path), read here with pyarrow (a client starts no Ray),
cast by the column schema with the invalid ones left out, drawn under the traffic's seed. Both
take dataset.source.drift as given (keel.data.drift for file rows), so a drifted stream is one
override away. The target column is held back as ground truth: after `feedback_delay_seconds`
the labels of a `feedback_fraction` of the served rows are posted to /v1/feedback, the way late
labels arrive in production. Everything goes over HTTP, so the app's validation, logs and
metrics see real traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import numpy as np
import pyarrow as pa

from keel.config import KeelConfig
from keel.config.schema import SimulateConfig, SourceFormat
from keel.data import drift, synthetic
from keel.data.batch import json_rows
from keel.data.sources import read_table
from keel.data.split import keep
from keel.data.validation import check_rows, only
from keel.errors import ConfigError, DataError, KeelError
from keel.monitoring.feedback import is_label

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 5.0  # between progress lines of a long round of requests
FEEDBACK_CHUNK = 1_000  # labels per POST: well inside the endpoint's item and body limits


class TrafficError(KeelError):
    """The app cannot be reached or refuses this client as a whole."""


@dataclass
class Traffic:
    """What a simulation sent and what the app answered."""

    url: str
    model: str
    requests: int
    rows_sent: int
    rows_served: int
    failed_requests: int
    statuses: dict[str, int]  # "200", "422", or an exception's name -> requests
    versions: dict[int, int]  # version that answered -> rows
    feedback_posted: int  # labels the app accepted
    feedback_failed: int
    p50_ms: float  # over served requests
    p99_ms: float
    duration_s: float  # the predict phase
    first_errors: dict[str, str] = field(default_factory=dict)  # status -> first detail
    served: dict[str, Any] = field(repr=False, default_factory=dict)  # request id -> truth
    labeled: list[str] = field(repr=False, default_factory=list)  # ids whose label was posted


class Answer(NamedTuple):
    status: str  # the HTTP status, or the exception's name when there was no answer
    body: Any  # parsed JSON, or the text when it is not JSON
    ms: float


def traffic_table(cfg: KeelConfig) -> pa.Table:
    """The rows to send, target included: generated for a synthetic dataset, replayed from the
    files of a file dataset; see the module docstring."""
    if cfg.dataset.source.format == SourceFormat.synthetic:
        return _generated(cfg)
    return _replayed(cfg)


def _generated(cfg: KeelConfig) -> pa.Table:
    """The dataset's generator under simulate's knobs."""
    sim = cfg.simulate
    if sim.path:
        raise ConfigError(
            f"simulate.path: dataset '{cfg.dataset.name}' is synthetic; its traffic is generated "
            "(simulate.path replays files of a file dataset)"
        )
    source = dataclasses.replace(
        cfg.dataset.source,
        seed=sim.seed,
        rows=sim.rows,
        invalid_fraction=sim.invalid_fraction,
    )
    try:
        return synthetic.generate(dataclasses.replace(cfg.dataset, source=source))
    except ValueError as e:
        name = cfg.dataset.name
        raise ConfigError(f"keel simulate cannot generate dataset '{name}': {e}") from None


def _replayed(cfg: KeelConfig) -> pa.Table:
    """simulate.rows valid rows the model did not train on (the test split, or the rows of
    simulate.path), drawn under simulate.seed, with the dataset's drift knobs applied."""
    ds, sim = cfg.dataset, cfg.simulate
    if sim.invalid_fraction:
        # planting broken rows is the synthetic generators' (keel.data.synthetic)
        raise ConfigError(
            "simulate.invalid_fraction: planted invalid rows need a synthetic dataset; "
            f"'{ds.name}' replays its files (set it to 0)"
        )
    rows = only(check_rows(read_table(ds, sim.path), ds), valid=True)
    if sim.path is None:
        rows = keep(rows, ds, "test")  # what training put in its test split: never trained on
    if not len(rows):
        where = sim.path or f"the test split of {ds.source.path}"
        raise DataError(f"keel simulate: no valid rows to replay in {where}")
    return drift.apply(rows.take(_draw(len(rows), sim.rows, sim.seed)), ds, sim.seed)


def _draw(available: int, rows: int, seed: int) -> np.ndarray:
    """`rows` row indices drawn under the seed, with replacement only when too few exist."""
    rng = np.random.default_rng([seed, 0])  # drift draws from streams 1 and 2
    return rng.choice(available, rows, replace=available < rows)


def simulate(cfg: KeelConfig) -> Traffic:
    """Send cfg.simulate's traffic to the app and post its labels; see the module docstring."""
    sim = cfg.simulate
    # not keel.serving.service.url: importing Ray Serve would cost a client seconds
    url = (sim.url or f"http://{cfg.serve.host}:{cfg.serve.port}").rstrip("/")
    headers = _headers(cfg)
    table = traffic_table(cfg)
    truth = table.column(cfg.dataset.target).to_pylist()
    rows = json_rows(table, drop=(cfg.dataset.target,))
    return _run(_simulate(url, sim, rows, truth, headers))


def _run(coroutine: Coroutine[Any, Any, Traffic]) -> Traffic:
    """asyncio.run, also where an event loop already runs (a Jupyter kernel's): then in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _headers(cfg: KeelConfig) -> dict[str, str]:
    env = cfg.serve.auth_token_env
    if not env:
        return {}
    if not (token := os.environ.get(env)):
        raise ConfigError(
            f"serve.auth_token_env is {env!r} but that environment variable is empty: export "
            "the token the app was started with"
        )
    return {"authorization": f"Bearer {token}"}


async def _simulate(
    url: str, sim: SimulateConfig, rows: list[dict], truth: list[Any], headers: dict[str, str]
) -> Traffic:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=sim.concurrency)
    async with aiohttp.ClientSession(
        headers=headers, timeout=timeout, connector=connector
    ) as session:
        await _check_app(session, url, sim.model)
        starts = range(0, len(rows), sim.batch_rows)
        batches = [{"instances": rows[i : i + sim.batch_rows]} for i in starts]
        predict_url = f"{url}/v1/models/{sim.model}:predict"
        started = time.perf_counter()
        answers = await _post_all(session, predict_url, batches, sim.concurrency, "predict")
        duration = time.perf_counter() - started
        served, versions = _served(starts, answers, truth)
        chosen = _pick(served, sim.feedback_fraction, sim.seed)
        if chosen:
            await asyncio.sleep(sim.feedback_delay_seconds)
        labeled = await _post_feedback(session, url, served, chosen, sim.concurrency)
    ok = [a.ms for a in answers if a.status == "200"]
    p50, p99 = np.percentile(ok, [50, 99]).tolist() if ok else (math.nan, math.nan)
    statuses = Counter(a.status for a in answers)
    return Traffic(
        url=url,
        model=sim.model,
        requests=len(answers),
        rows_sent=len(rows),
        rows_served=len(served),
        failed_requests=len(answers) - len(ok),
        statuses=dict(sorted(statuses.items())),
        versions=dict(sorted(versions.items())),
        feedback_posted=len(labeled),
        feedback_failed=len(chosen) - len(labeled),
        p50_ms=p50,
        p99_ms=p99,
        duration_s=duration,
        first_errors=_first_errors(answers),
        served=served,
        labeled=labeled,
    )


def _served(
    starts: Sequence[int], answers: list[Answer], truth: list[Any]
) -> tuple[dict[str, Any], Counter[int]]:
    """Request id -> ground truth of every served row, and rows per version that answered."""
    served: dict[str, Any] = {}
    versions: Counter[int] = Counter()
    for start, answer in zip(starts, answers, strict=True):
        if answer.status == "200":
            ids = [p["request_id"] for p in answer.body["predictions"]]
            versions[answer.body["version"]] += len(ids)
            served.update(zip(ids, truth[start : start + len(ids)], strict=True))
    return served, versions


async def _check_app(session: aiohttp.ClientSession, url: str, model: str) -> None:
    """Fail before sending anything when no app answers, it wants a token, or lacks the model."""
    answer = await _request(session, "GET", f"{url}/v1/models", None)
    if not answer.status.isdigit():  # no HTTP answer at all
        raise TrafficError(
            f"no keel app answers at {url} ({answer.body}): start it with `keel serve` "
            "(same serve.host and serve.port) or point simulate.url at it"
        )
    if answer.status == "401":
        raise TrafficError(
            f"the app at {url} wants a bearer token: set serve.auth_token_env to the name of "
            "the environment variable holding it"
        )
    if answer.status != "200":
        raise TrafficError(f"GET {url}/v1/models answered {answer.status}: {answer.body}")
    served = [m["model"] for m in answer.body["models"]]
    if model not in served:
        raise ConfigError(
            f"simulate.model: '{model}' is not served at {url} (served: {', '.join(served)})"
        )


async def _post_all(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[Any], concurrency: int, what: str
) -> list[Answer]:
    """Every body POSTed with at most `concurrency` in flight; answers in body order."""
    answers: list[Answer | None] = [None] * len(bodies)
    claimed = done = 0
    shown, logged = time.monotonic(), False

    async def worker() -> None:
        nonlocal claimed, done, shown, logged
        while claimed < len(bodies):
            i, claimed = claimed, claimed + 1  # no await in between: claims never overlap
            answers[i] = await _request(session, "POST", url, bodies[i])
            done += 1
            # a line every PROGRESS_SECONDS while it runs, and the total after such lines: a
            # round done in a blink says nothing (its caller says what was sent)
            now = time.monotonic()
            if now - shown >= PROGRESS_SECONDS or (done == len(bodies) and logged):
                shown, logged = now, True
                log.info("%s: %d/%d requests answered", what, done, len(bodies))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(bodies)))))
    return [a for a in answers if a is not None]


async def _request(session: aiohttp.ClientSession, method: str, url: str, body: Any) -> Answer:
    started = time.perf_counter()
    try:
        async with session.request(method, url, json=body) as r:
            text = await r.text()
            status = str(r.status)
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return Answer(type(e).__name__, str(e), (time.perf_counter() - started) * 1000)
    ms = (time.perf_counter() - started) * 1000
    try:
        return Answer(status, json.loads(text), ms)
    except ValueError:
        return Answer(status, text, ms)


def _pick(served: dict[str, Any], fraction: float, seed: int) -> list[str]:
    """`fraction` of the served ids that have a label (a planted null target has none),
    chosen by the seed: the same traffic labels the same rows."""
    candidates = [i for i, y in served.items() if is_label(y)]
    k = round(fraction * len(candidates))
    chosen = np.random.default_rng(seed).choice(len(candidates), k, replace=False)
    return [candidates[j] for j in sorted(chosen)]


async def _post_feedback(
    session: aiohttp.ClientSession,
    url: str,
    served: dict[str, Any],
    ids: list[str],
    concurrency: int,
) -> list[str]:
    """Post the labels of `ids` in chunks; the ids the app accepted."""
    chunks = [ids[i : i + FEEDBACK_CHUNK] for i in range(0, len(ids), FEEDBACK_CHUNK)]
    bodies = [{"feedback": [{"request_id": i, "label": served[i]} for i in c]} for c in chunks]
    answers = await _post_all(session, f"{url}/v1/feedback", bodies, concurrency, "feedback")
    for answer in answers:
        if answer.status != "200":
            log.warning("feedback refused (%s): %s", answer.status, _detail(answer.body))
    return [i for c, a in zip(chunks, answers, strict=True) if a.status == "200" for i in c]


def _first_errors(answers: list[Answer]) -> dict[str, str]:
    first: dict[str, str] = {}
    for answer in answers:
        if answer.status != "200" and answer.status not in first:
            first[answer.status] = _detail(answer.body)
    return first


def _detail(body: Any) -> str:
    """The first line of an error answer: keel's `detail` list, or the text itself."""
    if isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
        return str(body["detail"][0])
    return str(body)[:300]


def describe(traffic: Traffic) -> list[tuple[str, str]]:
    """Summary lines for the job."""
    statuses = ", ".join(f"{s}: {n:,}" for s, n in traffic.statuses.items())
    versions = ", ".join(f"v{v}: {n:,}" for v, n in traffic.versions.items()) or "none"
    lines = [
        ("app", f"{traffic.url} (model {traffic.model})"),
        ("requests", f"{traffic.requests:,} ({traffic.failed_requests:,} failed): {statuses}"),
        ("rows", f"{traffic.rows_sent:,} sent, {traffic.rows_served:,} served"),
        ("served by", f"{versions} rows"),
        (
            "latency",
            f"p50 {traffic.p50_ms:.1f} ms, p99 {traffic.p99_ms:.1f} ms, "
            f"{traffic.duration_s:.1f} s in all",
        ),
        ("feedback", f"{traffic.feedback_posted:,} labels posted"),
    ]
    if traffic.feedback_failed:
        lines.append(("feedback refused", f"{traffic.feedback_failed:,} labels (see the log)"))
    lines += [(f"first {status}", detail) for status, detail in traffic.first_errors.items()]
    return lines

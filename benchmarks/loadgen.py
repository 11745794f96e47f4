"""A bounded HTTP load generator: exactly `total` POSTs from at most `concurrency` in flight.

Closed loop by default (each of `concurrency` workers sends its next request when the last one
answers), which finds a server's capacity at that concurrency. With `rate_rps` it is open loop:
request i is due at i / rate_rps, and its latency counts from when it was due, not when it was
sent, so a server that falls behind shows its queueing in the tail (no coordinated omission).
Either way nothing queues without bound: a worker claims the next request only when it is free.

Failures (non-2xx answers, timeouts, refused connections) are counted, never raised, so a
reliability test can assert on them. Latency percentiles are over successful requests only: a
fast 503 must not make a server look quick.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

JSON = {"content-type": "application/json"}


@dataclass
class LoadResult:
    sent: int
    ok: int
    failed: int
    statuses: dict[str, int]  # "200", "503", or an exception's name ("TimeoutError") -> count
    duration_s: float
    throughput_rps: float  # successful requests per second of the whole run
    p50_ms: float
    p99_ms: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)  # successful ones
    answers: list[bytes] = field(repr=False, default_factory=list)  # their bodies, if kept
    # when each successful one was answered, in seconds from the run's start (latencies_ms' order)
    answered_s: list[float] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the raw latencies, times and answers: what a report keeps."""
        raw = ("latencies_ms", "answers", "answered_s")
        return {k: v for k, v in asdict(self).items() if k not in raw}


async def run_async(
    url: str,
    payloads: Sequence[bytes],
    concurrency: int,
    total: int,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    rate_rps: float | None = None,
    keep_answers: bool = False,
    seconds: float | None = None,
) -> LoadResult:
    """POST payloads[i % len(payloads)] for i in range(total); see the module docstring.
    keep_answers: also return the successful answers' bodies (what a test checks the logs
    against). seconds: stop sending after that long, however many of `total` were sent."""
    if concurrency < 1 or total < 1 or not payloads:
        raise ValueError("loadgen needs concurrency >= 1, total >= 1 and at least one payload")
    if rate_rps is not None and rate_rps <= 0:
        raise ValueError("loadgen rate_rps must be positive (or None for closed loop)")
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    answers: list[bytes] = []
    answered: list[float] = []
    claimed = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(session: aiohttp.ClientSession, started: float) -> None:
        nonlocal claimed
        while claimed < total and (seconds is None or time.perf_counter() - started < seconds):
            i, claimed = claimed, claimed + 1  # no await in between: claims never overlap
            due = started + i / rate_rps if rate_rps else time.perf_counter()
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            try:
                async with session.post(url, data=payloads[i % len(payloads)]) as r:
                    body = await r.read()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                statuses[type(e).__name__] += 1
                continue
            statuses[str(status)] += 1
            if 200 <= status < 300:
                now = time.perf_counter()
                latencies.append((now - due) * 1000)
                answered.append(now - started)
                if keep_answers:
                    answers.append(body)

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={**JSON, **(headers or {})}
    ) as session:
        started = time.perf_counter()
        workers = (worker(session, started) for _ in range(min(concurrency, total)))
        await asyncio.gather(*workers)
        duration = time.perf_counter() - started
    ok = len(latencies)
    p50, p99 = np.percentile(latencies, [50, 99]).tolist() if ok else (float("nan"),) * 2
    return LoadResult(
        sent=sum(statuses.values()),
        ok=ok,
        failed=sum(statuses.values()) - ok,
        statuses=dict(statuses),
        duration_s=duration,
        throughput_rps=ok / duration,
        p50_ms=p50,
        p99_ms=p99,
        latencies_ms=latencies,
        answers=answers,
        answered_s=answered,
    )


def run(url: str, payloads: Sequence[bytes], concurrency: int, total: int, **kw: Any) -> LoadResult:
    """`run_async` from synchronous code (a benchmark, a test); not inside a running loop."""
    return asyncio.run(run_async(url, payloads, concurrency, total, **kw))

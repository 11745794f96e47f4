"""Requests generated from a served OpenAPI document by schemathesis, and a concurrent sender.

Every operation gets `n` requests, drawn with a fixed seed (the same requests every run):
- an operation with a body gets a third valid by its schema and a third that break it
  (schemathesis' positive and negative modes), and a third of raw bodies schemathesis does
  not send: any JSON document (NaN and Infinity included, which Python's json accepts) and any
  bytes;
- an operation without one gets any query string and, now and then, a junk header.
Generation is the slow part (~10 ms a request), so a document's requests are made once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import string
from dataclasses import dataclass
from typing import Any

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, openapi


@dataclass(frozen=True)
class Fuzz:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


@dataclass
class Answer:
    fuzz: Fuzz
    status: int
    body: bytes


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
RAW_BODIES = JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)
QUERIES = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=3).map(tuple)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["Authorization", "Content-Type", "X-Junk"]),
        st.text(string.ascii_letters + string.digits + " -_.:/=+", max_size=40),
    ),
    max_size=1,
).map(tuple)


@functools.cache
def requests_for(spec_text: str, n: int) -> dict[tuple[str, str], list[Fuzz]]:
    """(method, path) -> n generated requests, for every operation of the document."""
    out = {}
    for result in openapi.from_dict(json.loads(spec_text)).get_all_operations():
        op = result.ok()
        method, path = op.method.upper(), op.path
        if op.body:
            third = n // 3
            cases = [
                *_draw(op.as_strategy(GenerationMode.POSITIVE), third),
                *_draw(op.as_strategy(GenerationMode.NEGATIVE), third),
            ]
            raw = st.builds(Fuzz, st.just(method), st.just(path), QUERIES, HEADERS, RAW_BODIES)
            out[(method, path)] = [*map(_from_case, cases), *_draw(raw, n - 2 * third)]
        else:
            bare = st.builds(Fuzz, st.just(method), st.just(path), QUERIES, HEADERS, st.none())
            out[(method, path)] = _draw(bare, n)
    return out


def _from_case(case: Any) -> Fuzz:
    kw = case.as_transport_kwargs(base_url="")
    if "json" in kw:
        body: bytes | None = json.dumps(kw["json"]).encode()
    else:
        data = kw.get("data")
        body = data.encode() if isinstance(data, str) else data
    params = kw.get("params") or {}
    return Fuzz(
        kw["method"],
        case.formatted_path,
        tuple((str(k), str(v)) for k, v in params.items()),
        tuple((k, str(v)) for k, v in kw.get("headers", {}).items()),
        body,
    )


def _draw(strategy: st.SearchStrategy, n: int) -> list:
    drawn: list = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(x: Any) -> None:
        drawn.append(x)

    collect()
    return drawn


def send(base: str, requests: list[Fuzz], concurrency: int = 32) -> list[Answer]:
    """Send every request, at most `concurrency` at once; their answers in order."""
    return asyncio.run(_send(base, requests, concurrency))


async def _send(base: str, requests: list[Fuzz], concurrency: int) -> list[Answer]:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(f: Fuzz) -> Answer:
            async with (
                limit,
                session.request(
                    f.method, base + f.path, params=f.query, headers=f.headers, data=f.body
                ) as r,
            ):
                return Answer(f, r.status, await r.read())

        return await asyncio.gather(*(one(f) for f in requests))

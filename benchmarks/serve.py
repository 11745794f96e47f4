"""The serving benchmark: keel's Serve application vs a bare FastAPI + uvicorn process.

Two models live in a private registry (serve_models: trained on first use, not timed): the
configured demo MLP and a heavy one (`heavy_hidden_sizes`, over a million parameters), with the
same features and data. For each in turn, keel serves the pinned version (proxy -> ingress ->
batched model deployment, fixed `replicas`) and benchmarks.bare_server serves the same version
in one uvicorn process on another port. Before anything is timed both must answer the same
predictions for the same request.

Timed: closed-loop load (benchmarks.loadgen) at each `concurrency` for 1-row and 32-row
requests, `requests` per point per side after a warm-up, keel and bare alternating (the order
flips every repeat; medians over `repeats`). Reported per point: requests/s, p50, p99 and
keel / bare. Headline per model: keel's best rows/s over bare's best rows/s, with both p99s at
keel's best point; then the SLO check: keel paced (open loop) at half its best request rate,
its p99 against slo.latency_p99_ms. For the demo model, keel's :explain against its own
:predict on the same 32-row requests (`explain`: throughput and p99 of each), and predict's
own figures with one :explain caller beside it. The load generator runs in this process on
the same cores as both servers, so absolute numbers are lower bounds on a bigger machine;
ratios are the point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import multiprocessing
import socket
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import requests

from keel.app import Summary
from keel.config import KeelConfig, to_dict
from keel.config.schema import ServedModel
from keel.errors import ConfigError, KeelError
from keel.serving import service
from keel.storage import join

from . import bare_server, common, loadgen
from .serve_models import Model, make_payloads, trained_models

log = logging.getLogger(__name__)

SIDES = ("keel", "bare")
PARAMS = (  # bench.params keys, all set in conf/bench/serve.yaml
    "concurrency",
    "rows_per_request",
    "requests",
    "warmup",
    "payloads",
    "epochs",
    "heavy_hidden_sizes",
    "replicas",
    "targets",
    "explain",
)


def run(cfg: KeelConfig, ray_times: common.Phases) -> Summary:
    from ray import serve

    p = cfg.bench.params
    if missing := [k for k in PARAMS if k not in p]:
        raise ConfigError(f"bench.params: missing {missing} (see conf/bench/serve.yaml)")
    work = dataclasses.replace(
        cfg,
        dataset=common.bench_dataset(cfg),
        paths=common.paths_under(join(cfg.paths.root, "bench", "serve")),
        train=dataclasses.replace(cfg.train, epochs=p["epochs"]),
    )
    models = trained_models(work, p["heavy_hidden_sizes"])
    payloads = make_payloads(work, p["rows_per_request"], p["payloads"])
    ports = {side: _free_port() for side in SIDES}
    results = {}
    try:
        for m in models:
            results[m.role] = bench_model(work, m, payloads, ports, p)
    finally:
        serve.shutdown()  # frees the cores for whatever runs next in this process
    report = common.write_report(
        cfg, {"params": p, "train_rows": cfg.bench.rows, **ray_times, "models": results}
    )
    s = summarize(cfg, p, models, results)
    s.add("ray start-up", f"{ray_times['ray_startup_s']:.1f} s (not in the figures above)")
    return s.add("report", report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- measuring


def bench_model(
    cfg: KeelConfig, m: Model, payloads: dict[int, list[bytes]], ports: dict, p: dict
) -> dict[str, Any]:
    """Serve `m` both ways, check they agree, warm up, sweep, then the SLO check on keel."""
    template = cfg.serve.models.get(cfg.dataset.name, ServedModel())
    served = ServedModel(version=str(m.version), postprocess=template.postprocess)
    pinned = {"min_replicas": p["replicas"], "max_replicas": p["replicas"]}
    serve_cfg = dataclasses.replace(
        cfg.serve, models={m.name: served}, port=ports["keel"], autoscaling=pinned
    )
    kcfg = dataclasses.replace(cfg, serve=serve_cfg)
    bare_args = {
        "registry": cfg.paths.registry,
        "model": m.name,
        "version": m.version,
        "postprocess": json.dumps(to_dict(served.postprocess)),
        "max_rows": cfg.serve.max_rows_per_request,
        "torch_threads": replica_threads(cfg),
    }
    route = f"/v1/models/{m.name}:predict"
    most = max(p["concurrency"])
    with bare_server.running(bare_args, ports["bare"]) as bare:
        keel = service.start(kcfg)
        try:
            urls = {"keel": keel + route, "bare": bare + route}
            check(urls, payloads)
            for bodies in payloads.values():
                for side in SIDES:
                    loadgen.run(urls[side], bodies, most, p["warmup"])
            points = sweep(urls, payloads, p, cfg.bench.repeats)
            explained = None
            if m.role == "demo":
                explained = explain_vs_predict(keel, m.name, payloads, p)
            best = max(points, key=lambda pt: pt["keel"]["rows_per_s"])
            rate, size = best["keel"]["rps"] / 2, best["rows_per_request"]
            log.info("%s: SLO check, keel paced at %.0f req/s ...", m.name, rate)
            paced = loadgen.run(urls["keel"], payloads[size], most, p["requests"], rate_rps=rate)
        finally:
            service.stop(kcfg)
    slo = {"rows_per_request": size, "rate_rps": rate, **paced.summary()}
    slo["slo_p99_ms"] = cfg.slo.latency_p99_ms
    slo["pass"] = paced.failed == 0 and paced.p99_ms <= cfg.slo.latency_p99_ms
    return {
        "model": dataclasses.asdict(m),
        "torch_threads": bare_args["torch_threads"],
        "points": points,
        "headline": headline(points, p["targets"][m.role]),
        "slo": slo,
        "explain": explained,
    }


def explain_vs_predict(base: str, model: str, payloads: dict[int, list[bytes]], p: dict) -> dict:
    """keel's :explain against its own :predict on the same requests (the largest size), the
    two alternating at each concurrency (`points`): what an explanation costs a caller. Then
    predict at the highest concurrency alone, with one caller asking :explain beside it
    (`beside`) and with one more predict caller instead (`beside_predict`), alternating: what
    explanations cost predict on the same machine, against what any other caller costs. Both
    operations answer the same predictions first."""
    size, e = max(payloads), p["explain"]
    repeats = e["repeats"]  # its own: a p99 of the sweep's short runs moves with the machine
    bodies = payloads[size]
    urls = {op: f"{base}/v1/models/{model}:{op}" for op in ("predict", "explain")}
    answers = {
        op: requests.post(url, data=bodies[0], headers=loadgen.JSON, timeout=60)
        for op, url in urls.items()
    }
    if any(r.status_code != 200 for r in answers.values()):
        raise KeelError(f"explain check: { ({op: r.text[:200] for op, r in answers.items()}) }")
    predicted, explained = (answers[op].json()["predictions"] for op in urls)
    if [a["prediction"] for a in predicted] != [a["prediction"] for a in explained]:
        raise KeelError("explain and predict answer different predictions for the same request")
    loadgen.run(urls["explain"], bodies, max(e["concurrency"]), e["warmup"])
    points = []
    for c in e["concurrency"]:
        timed = {
            op: functools.partial(loadgen.run, url, bodies, c, e["requests"])
            for op, url in urls.items()
        }
        point = {"rows_per_request": size, "concurrency": c, **_alternate(timed, repeats, size)}
        log.info("explain vs predict, %d rows x %d in flight: %s", size, c, _explain_line(point))
        points.append(point)
    most = max(e["concurrency"])
    predict = functools.partial(loadgen.run, urls["predict"], bodies, most, e["requests"])

    def beside(op: str) -> Callable[[], loadgen.LoadResult]:
        def run() -> loadgen.LoadResult:
            with _one_caller(urls[op], bodies):
                return predict()

        return run

    # beside one more predict caller too: any caller takes a share of the 2 cores that the
    # servers and the load generator share, so an explanation's own cost is the difference
    timed = {"alone": predict, "beside": beside("explain"), "beside_predict": beside("predict")}
    besides = {"rows_per_request": size, "concurrency": most, **_alternate(timed, repeats, size)}
    log.info("predict beside explain: %s", _beside_line(besides))
    return {"points": points, "beside": besides}


def _alternate(
    runs: dict[str, Callable[[], loadgen.LoadResult]], repeats: int, size: int
) -> dict[str, dict[str, Any]]:
    """Each named run `repeats` times, their order flipping every repeat (a shared machine
    drifts), and the median of each."""
    results: dict[str, list[loadgen.LoadResult]] = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            results[name].append(runs[name]())
    return {name: _median(done, size) for name, done in results.items()}


@contextlib.contextmanager
def _one_caller(url: str, bodies: list[bytes]):
    """While the block runs, one more caller posts to `url` again and again, from a process of
    its own: a thread here would take the GIL from the predict callers it is measured beside."""
    spawn = multiprocessing.get_context("spawn")
    asking, stop = spawn.Event(), spawn.Event()
    caller = spawn.Process(target=_call_until, args=(url, bodies, asking, stop), daemon=True)
    caller.start()
    try:
        if not asking.wait(60):
            raise KeelError(f"the caller beside predict never got an answer from {url}")
        yield
    finally:
        stop.set()
        caller.join()


def _call_until(url: str, bodies: list[bytes], asking, stop) -> None:
    """Post, one request in flight, until `stop`; `asking` once answers come back."""
    while not stop.is_set():
        loadgen.run(url, bodies, 1, 5)
        asking.set()


def _versus(first: str, a: dict, second: str, b: dict, ratio: str) -> str:
    """Two medians side by side, then how they compare."""
    return (
        f"{first} {a['rows_per_s']:,.0f} rows/s, p99 {a['p99_ms']:.1f} ms vs {second} "
        f"{b['rows_per_s']:,.0f} rows/s, p99 {b['p99_ms']:.1f} ms: {ratio}"
    )


def _beside_line(b: dict) -> str:
    alone, explain, other = b["alone"], b["beside"], b["beside_predict"]
    ratios = (
        f"p99 {explain['p99_ms'] / alone['p99_ms']:.2f}x alone's; beside one more predict caller "
        f"instead {other['rows_per_s']:,.0f} rows/s, p99 {other['p99_ms']:.1f} ms "
        f"({other['p99_ms'] / alone['p99_ms']:.2f}x)"
    )
    return _versus("predict with one :explain caller beside", explain, "alone", alone, ratios)


def _explain_line(pt: dict) -> str:
    x, q = pt["explain"], pt["predict"]
    ratio = f"{x['rows_per_s'] / q['rows_per_s']:.2f}x the throughput"
    return _versus("explain", x, "predict", q, ratio)


def replica_threads(cfg: KeelConfig) -> int:
    """torch threads of a keel replica: Ray sets OMP_NUM_THREADS to its whole CPUs, at least 1."""
    return max(math.floor(cfg.serve.replica_cpus), 1)


def check(urls: dict[str, str], payloads: dict[int, list[bytes]]) -> None:
    """Both sides answer the same predictions for the same request, or nothing is timed."""
    body = payloads[max(payloads)][0]
    answers = {}
    for side, url in urls.items():
        r = requests.post(url, data=body, headers=loadgen.JSON, timeout=30)
        if r.status_code != 200:
            raise KeelError(f"{side} answered {r.status_code}: {r.text[:300]}")
        answers[side] = r.json()
    keel, bare = (answers[s]["predictions"] for s in SIDES)
    same_raw = np.allclose([k["prediction"] for k in keel], [b["prediction"] for b in bare])
    if not same_raw or [k["output"] for k in keel] != [b["output"] for b in bare]:
        raise KeelError(f"keel and the bare server disagree: {keel[:2]} vs {bare[:2]}")


def sweep(urls: dict[str, str], payloads: dict, p: dict, repeats: int) -> list[dict]:
    """Every (request size, concurrency) point, the two sides alternating within it."""
    points = []
    for size, bodies in payloads.items():
        for c in p["concurrency"]:
            timed = {
                side: functools.partial(loadgen.run, urls[side], bodies, c, p["requests"])
                for side in SIDES
            }
            point = {"rows_per_request": size, "concurrency": c, **_alternate(timed, repeats, size)}
            point["ratio"] = point["keel"]["rps"] / point["bare"]["rps"]
            log.info("%2d rows x %2d in flight: %s", size, c, _point_line(point))
            points.append(point)
    return points


def _median(results: list[loadgen.LoadResult], size: int) -> dict[str, Any]:
    rps = statistics.median(r.throughput_rps for r in results)
    return {
        "rps": rps,
        "rows_per_s": rps * size,
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "failed": sum(r.failed for r in results),
        "runs": [r.summary() for r in results],
    }


def headline(points: list[dict], target: dict[str, Any]) -> dict[str, Any]:
    """Best rows/s of each side (each at its own best point); p99s at keel's best point."""
    kb = max(points, key=lambda pt: pt["keel"]["rows_per_s"])
    bb = max(points, key=lambda pt: pt["bare"]["rows_per_s"])
    ratio = kb["keel"]["rows_per_s"] / bb["bare"]["rows_per_s"]
    p99_ok = kb["keel"]["p99_ms"] <= kb["bare"]["p99_ms"]
    return {
        "one_in_flight": one_in_flight(points),
        "keel_best": {k: kb[k] for k in ("rows_per_request", "concurrency")},
        "bare_best": {k: bb[k] for k in ("rows_per_request", "concurrency")},
        "keel_rows_per_s": kb["keel"]["rows_per_s"],
        "bare_rows_per_s": bb["bare"]["rows_per_s"],
        "ratio": ratio,
        "target": target,
        "keel_p99_ms": kb["keel"]["p99_ms"],
        "bare_p99_ms_same_point": kb["bare"]["p99_ms"],
        "p99_no_worse": p99_ok,
        "pass": ratio >= target["ratio"] and (p99_ok or not target["p99_no_worse"]),
    }


def one_in_flight(points: list[dict]) -> dict[str, Any] | None:
    """p50 of 1-row requests one at a time, each side: the latency a lone caller waits, which
    best throughput hides (batching wins only when requests queue)."""
    lone = [pt for pt in points if pt["concurrency"] == 1 and pt["rows_per_request"] == 1]
    if not lone:
        return None
    k, b = lone[0]["keel"]["p50_ms"], lone[0]["bare"]["p50_ms"]
    return {"keel_p50_ms": k, "bare_p50_ms": b, "keel_over_bare": k / b}


# ----------------------------------------------------------------------------- reporting


HEADER = f"{'keel req/s':>10} {'p50':>6} {'p99 ms':>7} | {'bare req/s':>10} {'p50':>6} " + (
    f"{'p99 ms':>7} | keel/bare"
)


def _point_line(pt: dict) -> str:
    k, b = pt["keel"], pt["bare"]
    return (
        f"{k['rps']:10.0f} {k['p50_ms']:6.1f} {k['p99_ms']:7.1f} | "
        f"{b['rps']:10.0f} {b['p50_ms']:6.1f} {b['p99_ms']:7.1f} | {pt['ratio']:8.2f}x"
    )


def _at(point: dict) -> str:
    return f"{point['rows_per_request']} rows x {point['concurrency']}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summarize(cfg: KeelConfig, p: dict, models: list[Model], results: dict) -> Summary:
    s = Summary(
        f"bench serve: keel's Serve app vs a bare FastAPI + uvicorn process, {p['requests']} "
        f"requests per point and side, median of {cfg.bench.repeats} alternating runs"
    )
    for m in models:
        r, role = results[m.role], m.role
        h, slo, target = r["headline"], r["slo"], r["headline"]["target"]
        s.add(
            f"{role} model", f"{m.name} v{m.version}: MLP {m.hidden_sizes}, {m.parameters:,} params"
        )
        s.add("  rows x in flight", HEADER)
        for pt in r["points"]:
            s.add(f"  {pt['rows_per_request']:>2} x {pt['concurrency']:>2}", _point_line(pt))
        s.add(
            f"{role}: best rows/s",
            f"keel {h['keel_rows_per_s']:,.0f} ({_at(h['keel_best'])}) vs bare "
            f"{h['bare_rows_per_s']:,.0f} ({_at(h['bare_best'])}): {h['ratio']:.2f}x, "
            f"target >= {target['ratio']}x: {_verdict(h['ratio'] >= target['ratio'])}",
        )
        if lone := h["one_in_flight"]:
            s.add(
                f"{role}: 1 row, 1 in flight",
                f"p50 keel {lone['keel_p50_ms']:.1f} ms vs bare {lone['bare_p50_ms']:.1f} ms: "
                f"{lone['keel_over_bare']:.2f}x the bare latency (target <= 2x)",
            )
        s.add(
            f"{role}: p99 at keel's best",
            f"keel {h['keel_p99_ms']:.1f} ms vs bare {h['bare_p99_ms_same_point']:.1f} ms"
            + (
                f" (target: no worse): {_verdict(h['p99_no_worse'])}"
                if target["p99_no_worse"]
                else ""
            ),
        )
        s.add(
            f"{role}: SLO at half max",
            f"{slo['rate_rps']:.0f} req/s of {slo['rows_per_request']} rows, open loop: p99 "
            f"{slo['p99_ms']:.1f} ms (p50 {slo['p50_ms']:.1f}) vs {slo['slo_p99_ms']:.0f} ms, "
            f"{slo['failed']} failed: {_verdict(slo['pass'])}",
        )
        if explained := r["explain"]:
            for pt in explained["points"]:
                s.add(f"{role}: explain, {_at(pt)}", _explain_line(pt))
            s.add(f"{role}: predict, {_at(explained['beside'])}", _beside_line(explained["beside"]))
        failed = {side: sum(pt[side]["failed"] for pt in r["points"]) for side in SIDES}
        if any(failed.values()):
            s.add(f"{role}: failed requests", ", ".join(f"{k} {v}" for k, v in failed.items()))
    b = cfg.serve.batching
    s.add(
        "notes",
        f"keel: {p['replicas']} model replica(s) of {cfg.serve.replica_cpus} CPU, batches of "
        f"{b.max_batch_size} within {b.wait_ms} ms, every prediction logged; bare: one uvicorn "
        f"process, no batching, no log; torch {replica_threads(cfg)} thread(s) on both sides. "
        "The load generator runs on the same cores as both servers.",
    )
    return s

"""The Serve application over real HTTP: the API contract, bad input, canary, shadow, promotion
under load, auth, simulated traffic with its feedback, and prediction and request logs that hold
exactly what was answered.

One application per topology serves the whole module (deploying costs ~15 s here); the tests
run in file order: the auth test switches it to a secured config, the last one shuts it down."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import api_fuzz
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import requests

from benchmarks import loadgen
from keel import prediction_log
from keel.config import load
from keel.data import synthetic
from keel.data.batch import json_rows
from keel.registry import Registry
from keel.serving import service
from keel.serving.batch import predict_dataset
from keel.serving.predictor import Predictor
from keel.traffic import TrafficError, describe, simulate, traffic_table

# Generated requests per operation: one with a body, and one without, whose only inputs are a
# query string and headers (6 operations: 2,000 each was 12,000 requests, ~2 CPU-min to draw and
# send; 3 operations are bare)
FUZZ_PER_BODY, FUZZ_PER_BARE = 2_000, 400
# :explain takes predict's body through the same validation (fuzzed above): what is its own is
# the answer, which fewer valid bodies cover
FUZZ_PER_EXPLAIN = 90
# The soak's steady load (make soak: 600) and the bound on the ingress replica's RSS growth
# after its first quarter: a leak of 1 KiB a request is ~7.5 MiB a minute at ~128 requests/s
# (half this machine's capacity), so 10 minutes would see one and 20 s would not
SOAK_SECONDS = float(os.environ.get("KEEL_SOAK_SECONDS", "20"))
RSS_GROWTH_MIB = 32
# The tests of what the ingress alone decides (request validation, limits, feedback, auth) run
# on one topology: the graph's ingress is the same code, only the models sit behind handles.
INGRESS = pytest.mark.parametrize("app", ["fused"], indirect=True)


class Client:
    """Posts to the app and remembers every acknowledged instance and every answer's status
    (for the log checks)."""

    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()
        self.acknowledged: set[str] = set()
        self.answered: Counter[tuple[str, int]] = Counter()  # (model, status) -> requests
        self.lock = threading.Lock()

    def predict(self, model: str, instances, op: str = "predict", **kw) -> requests.Response:
        """`op` "explain" posts to :explain, whose answers are predict's and are logged alike."""
        body = {"instances": instances} if "data" not in kw and "json" not in kw else None
        r = self.session.post(
            f"{self.base}/v1/models/{model}:{op}", json=kw.pop("json", body), timeout=60, **kw
        )
        with self.lock:
            self.answered[(model, r.status_code)] += 1
            if r.status_code == 200:
                self.acknowledged.update(p["request_id"] for p in r.json()["predictions"])
        return r


def _config(root: str, port: int, *extra: str):
    return load(
        [
            f"paths.root={root}",
            "ray.progress_bars=false",
            f"serve.port={port}",
            "serve.reload_seconds=0.5",
            "serve.log.flush_seconds=1",
            "serve.models.churn.canary.version='2'",
            "serve.models.churn.canary.percent=10",
            "serve.models.churn.shadow='2'",
            *extra,
        ]
    )


@pytest.fixture(scope="module", params=["fused", "graph"])
def app(request, trained_root, serve_port, tmp_path_factory):
    """Both topologies: models inside the ingress, or a deployment per model behind it."""
    root = tmp_path_factory.mktemp("serving") / "out"
    shutil.copytree(Path(trained_root) / "registry", root / "registry")
    cfg = _config(str(root), serve_port, f"serve.fused={request.param == 'fused'}")
    base = service.start(cfg)
    yield cfg, Client(base)
    service.stop(cfg)


def _rows(dataset: str, n: int, seed: int) -> list[dict]:
    cfg = load(
        [
            f"experiment={dataset}",
            f"dataset.source.rows={n}",
            f"dataset.source.seed={seed}",
            "dataset.source.invalid_fraction=0",
        ]
    )
    return json_rows(synthetic.generate(cfg.dataset), drop=(cfg.dataset.target,))


def test_a_lone_request_does_not_wait_for_a_batch_to_fill(app):
    """serve.batching.wait_ms (2 ms) is paid only when other requests are in flight: requests
    sent one at a time start their batch at once, in Ray Serve's own under-1-ms bucket of
    serve_batch_wait_time_ms (before, each waited the full 2 ms for company). First in the
    module, so the app's batches are these requests' alone: the metrics are exported every few
    seconds, and later tests' batches would still be arriving."""
    _, client = app
    before = _batch_waits()
    for row in _rows("listings", 20, seed=5):
        assert client.predict("listings", [row]).status_code == 200

    def grown() -> tuple[float, float]:  # per replica series: others' replicas add nothing
        after = _batch_waits()
        return tuple(sum(after[k][i] - before.get(k, (0, 0))[i] for k in after) for i in (0, 1))

    _wait(lambda: grown()[1] >= 20, timeout=60)
    at_once, batches = grown()
    # waiting, every batch took 2 ms or more; at once, a few may still pass 1 ms on a busy
    # 2-core machine (the replica's flush thread, the load of the test run)
    assert batches == 20 and at_once >= 15, (at_once, batches)


def _batch_waits() -> dict[str, tuple[float, float]]:
    """Per series (replica): (batches that waited under 1 ms, all batches), from the metrics."""
    port = ray.nodes()[0]["MetricsExportPort"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    metric = r"^ray_serve_batch_wait_time_ms_(bucket|count)\{([^}]*)\} (\S+)$"
    out: dict[str, list[float]] = {}
    for kind, tags, value in re.findall(metric, text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', tags))
        bucket = labels.pop("le", None)
        series = out.setdefault(str(sorted(labels.items())), [0.0, 0.0])
        if kind == "count":
            series[1] = float(value)
        elif bucket == "1.0":
            series[0] = float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def test_online_predictions_equal_in_process_predictions_with_post_processing(app):
    cfg, client = app
    rows = _rows("listings", 50, seed=3)
    r = client.predict("listings", rows)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "listings" and body["version"] == 1
    local = Predictor.load(
        Registry(cfg.paths.registry), "listings", 1, cfg.serve.models["listings"].postprocess
    )
    raw, outputs = local.predict_rows(rows)
    np.testing.assert_allclose([p["prediction"] for p in body["predictions"]], raw, rtol=1e-5)
    assert [p["output"] for p in body["predictions"]] == outputs
    floor = [p for p in body["predictions"] if p["prediction"] < 100]
    assert all(p["output"]["value"] == 100 and "price_floor" in p["output"]["rules"] for p in floor)
    assert len({p["request_id"] for p in body["predictions"]}) == 50


@pytest.fixture(scope="module")
def batch_churn(trained_root, tmp_path_factory) -> tuple[pa.Table, dict[int, dict[str, dict]]]:
    """200 churn rows, and what `keel predict` answers for them with each version (customer id
    -> row), once for both topologies: the batch side does not depend on how the app serves."""
    root = tmp_path_factory.mktemp("batch")
    shutil.copytree(Path(trained_root) / "registry", root / "out" / "registry")
    source = load(["experiment=churn", "dataset.source.rows=200", "dataset.source.seed=12"])
    table = synthetic.generate(source.dataset)
    pq.write_table(table, root / "rows.parquet")
    answers = {}
    for version in (1, 2):
        result = predict_dataset(
            load(
                [
                    f"paths.root={root / 'out'}",
                    "ray.progress_bars=false",
                    "experiment=churn",
                    "dataset.source.format=parquet",
                    f"dataset.source.path={root / 'rows.parquet'}",
                    f"serve.models.churn.version='{version}'",
                ]
            )
        )
        answers[version] = {r["customer_id"]: r for r in pq.read_table(result.path).to_pylist()}
    return table, answers


def test_online_predictions_equal_keel_predict_batch_predictions(app, batch_churn):
    """Both versions answer online (the 10% canary: of ~190 requests none would go to v2 with
    a chance of 2e-9), each as it answers in batch."""
    _, client = app
    table, batch_by_version = batch_churn
    valid = {r["customer_id"]: r for r in json_rows(table, drop=("churned",))}
    online: dict[str, dict] = {}
    for cid, row in valid.items():  # one row per request: invalid rows just get their 422
        r = client.predict("churn", [row])
        if r.status_code == 200:
            online[cid] = {**r.json()["predictions"][0], "version": r.json()["version"]}
    assert {p["version"] for p in online.values()} == {1, 2}
    for version, batch in batch_by_version.items():
        # batch also quarantines planted duplicate ids, which one-row requests cannot see
        assert set(batch) <= set(online) and len(batch) > 150
        for cid, p in online.items():
            if p["version"] == version:
                # float32 forward passes over batches of different shapes round differently: a
                # few ulps of the logit. On an AVX-512 host one row of 200 differed by 1.04e-6
                # (0.014357058 online, 0.014357043 in batch, the same before and after this
                # session's changes); a wrong version or feature is off by far more
                assert p["prediction"] == pytest.approx(batch[cid]["prediction"], rel=1e-5)
                assert p["output"] == {"label": batch[cid]["label"], "rules": batch[cid]["rules"]}


@INGRESS
@pytest.mark.parametrize(
    ("payload", "status", "names"),
    [
        ("{not json", 400, "not valid JSON"),
        ({"instances": [{"age": 40}]}, 422, "tenure_months: Field required"),
        ({"instances": [{"age": "forty"}]}, 422, "instances[0].age"),
        ('{"instances": [{"age": NaN}]}', 422, "instances[0].age"),
        ({"instances": [{"age": 17}]}, 422, "greater than or equal to 18"),
        ({"instances": [{"contract": "weekly"}]}, 422, "instances[0].contract"),
        ({"instances": [{"agee": 40}]}, 422, "instances[0].agee: unknown field"),
        ({"instances": []}, 422, "instances: List should have at least 1 item"),
        ({"rows": []}, 422, "rows: unknown field"),
        ([1, 2], 422, "body"),
        ("[" * 100_000 + "]" * 100_000, 400, "nested deeper than"),  # past Python's recursion
        ('{"instances": [' + "[" * 500 + "]" * 500 + "]}", 400, "nested deeper than"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(app, payload, status, names):
    _, client = app
    if isinstance(payload, str):
        r = client.predict(
            "churn", None, data=payload, headers={"content-type": "application/json"}
        )
    else:
        r = client.predict("churn", None, json=payload)
    assert r.status_code == status, r.text
    assert any(names in line for line in r.json()["detail"]), r.json()


@INGRESS
def test_limits_unknown_models_and_the_app_keeps_serving(app):
    cfg, client = app
    too_many = _rows("churn", 1, seed=1) * (cfg.serve.max_rows_per_request + 1)
    r = client.predict("churn", too_many)
    assert r.status_code == 422 and "at most 1000 items" in r.text
    r = client.predict("churn", None, data=b"x" * (cfg.serve.max_body_bytes + 1))
    assert r.status_code == 413
    chunks = [b" " * 65_536] * (cfg.serve.max_body_bytes // 65_536 + 2)
    r = client.predict("churn", None, data=iter(chunks))  # chunked: no Content-Length to trust
    assert r.status_code == 413 and "too_large" in r.text
    for unknown in ("fraud", "café", "🚀", "ünïcödé" * 40):  # any name, any Unicode: a 404
        for op in ("predict", "explain"):
            r = client.predict(unknown, _rows("churn", 1, seed=1), op=op)
            assert r.status_code == 404 and "served: churn, listings" in r.text, (unknown, r.text)
    assert client.predict("churn", _rows("churn", 3, seed=2)).status_code == 200
    assert requests.get(f"{client.base}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{client.base}/readyz", timeout=10).status_code == 200


# Hostile clients beside ordinary ones: connections that never send a byte, slow-loris
# headers (a byte every 0.25 s, never finished) and bodies sent a byte at a time
IDLE, LORIS, DRIBBLE, ORDINARY = 1_000, 50, 20, 200


@INGRESS
def test_slow_and_idle_clients_hold_up_no_one_and_the_app_stays_up(app):
    """While the hostile connections are open, ordinary requests are answered as before, and
    afterwards the app is ready. The latency is printed, not asserted: the latency SLO is
    asserted where nothing runs beside the test (test_pipeline_cli)."""
    cfg, client = app
    host, port = "127.0.0.1", cfg.serve.port
    rows = _rows("churn", 2, seed=21)

    def ordinary() -> list[float]:
        took = []
        for _ in range(ORDINARY):
            start = time.perf_counter()
            assert client.predict("churn", rows).status_code == 200
            took.append((time.perf_counter() - start) * 1000)
        return took

    before = ordinary()
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(IDLE)]
    slow = [socket.create_connection((host, port), timeout=10) for _ in range(LORIS + DRIBBLE)]
    body = b'{"request_id": "slow", "label": 1}'.ljust(4096)
    for i, conn in enumerate(slow):
        conn.sendall(
            b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\n"
            if i < LORIS
            else b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
    stop = threading.Event()

    def dribble() -> None:  # a header byte to each slow-loris, a body byte to each dribbler
        sent = 0
        while not stop.wait(0.25):
            for i, conn in enumerate(slow):
                conn.sendall(b"X" if i < LORIS else body[sent : sent + 1])
            sent += 1

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    try:
        during = ordinary()
        assert dribbler.is_alive()  # no hostile connection was cut while the others ran
    finally:
        stop.set()
        dribbler.join()
        for conn in idle + slow:
            conn.close()
    assert requests.get(f"{client.base}/readyz", timeout=10).status_code == 200
    assert client.predict("churn", rows).status_code == 200
    p50, p99 = np.percentile(before, [50, 99])
    q50, q99 = np.percentile(during, [50, 99])
    print(
        f"hostile clients: {IDLE} idle, {LORIS} slow-loris, {DRIBBLE} byte-at-a-time bodies; "
        f"{ORDINARY} ordinary requests each, all answered: p50 {p50:.1f} -> {q50:.1f} ms, "
        f"p99 {p99:.1f} -> {q99:.1f} ms"
    )


def test_models_and_openapi_describe_what_is_served(app):
    _, client = app
    listed = {m["model"]: m for m in requests.get(f"{client.base}/v1/models").json()["models"]}
    assert listed["churn"]["versions"] == {"primary": 1, "canary": 2, "shadow": 2}
    assert listed["listings"]["task"] == "regression"
    doc = requests.get(f"{client.base}/openapi.json").json()
    body = doc["paths"]["/v1/models/churn:predict"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    instance = doc["components"]["schemas"]["ChurnInstance"]
    assert ref == "ChurnPredictRequest"
    assert instance["properties"]["age"]["minimum"] == 18
    assert "churned" not in instance["properties"]


def test_serve_listens_on_this_rays_own_ports(app, session_workers):
    """The fallback proxy (which HAProxy sends a request to while an app's routes change)
    listens on the port chosen for this test process's Ray (keel.runtime.SERVE_PORTS), not on
    Ray's fixed 8500: it binds with SO_REUSEPORT, so the other test process's proxy on 8500
    took this one's requests (a 404 during an in-place update, another app's models)."""
    pids = {p.pid for p in session_workers()}
    listening = {
        c.laddr.port
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }
    assert int(os.environ["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"]) in listening, listening
    assert not {8404, 9101, 8500, 9500} & listening, listening


# The share is the ingress's draw, the same code on both topologies; the graph's canary
# deployment answers in the online-versus-batch test above.
@INGRESS
def test_a_ten_percent_canary_gets_ten_percent_of_requests(app):
    _, client = app
    row = _rows("churn", 1, seed=5)
    with ThreadPoolExecutor(8) as pool:
        versions = list(
            pool.map(lambda _: client.predict("churn", row).json()["version"], range(2000))
        )
    share = Counter(versions)[2] / len(versions)
    assert 0.07 <= share <= 0.13, Counter(versions)


def test_shadow_predictions_are_logged_and_never_returned(app):
    cfg, client = app
    rows = _rows("churn", 20, seed=6)
    body = client.predict("churn", rows).json()
    assert set(body) == {"model", "version", "predictions"}
    assert all(set(p) == {"request_id", "prediction", "output"} for p in body["predictions"])
    ids = {p["request_id"] for p in body["predictions"]}
    log = _wait_for_log(cfg, "churn", lambda t: ids <= set(_ids(t, "shadow")))
    shadow = {
        r["request_id"]: r for r in log if r["variant"] == "shadow" and r["request_id"] in ids
    }
    served = {
        r["request_id"]: r for r in log if r["variant"] != "shadow" and r["request_id"] in ids
    }
    assert set(shadow) == set(served) == ids
    assert all(shadow[i]["version"] == 2 for i in ids)


def test_explanations_say_why_per_input_column_and_are_logged_by_request_id(app):
    """:explain, and "explain": true on predict, answer as predict does plus, per prediction,
    an attribution per input column that adds up with the base value to the explained output:
    the log-odds of churn for churn v1's MLP (Integrated Gradients at serve.explain.steps), the
    price for listings. They come from the version of record (churn's 10% canary never
    explains) and equal what the version explains in this process; each is logged by request
    id."""
    cfg, client = app
    registry, steps = Registry(cfg.paths.registry), cfg.serve.explain.steps
    logged: dict[str, dict[str, dict]] = {}
    for model, rows in (
        ("churn", _rows("churn", 6, seed=9)),
        ("listings", _rows("listings", 4, 9)),
    ):
        local = Predictor.load(registry, model, 1, cfg.serve.models[model].postprocess)
        raw, outputs, expected = local.explain_rows(rows, steps)
        answers = [client.predict(model, rows, op="explain") for _ in range(10)]
        answers.append(client.predict(model, None, json={"instances": rows, "explain": True}))
        for r in answers:
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["version"] == 1
            for p, value, out, why in zip(body["predictions"], raw, outputs, expected, strict=True):
                got = p["explanation"]
                assert set(got["attributions"]) == set(local.features.input_columns)
                total = got["base"] + sum(got["attributions"].values())
                # IG's integral at 64 steps: within 1% of what the attributions explain
                moved = max(abs(got["output"] - got["base"]), 1.0)
                assert total == pytest.approx(got["output"], abs=0.01 * moved), (model, got)
                margin = 1 / (1 + np.exp(-got["output"])) if model == "churn" else got["output"]
                assert (p["prediction"], p["output"]) == (pytest.approx(value, rel=1e-4), out)
                assert margin == pytest.approx(value, rel=1e-4)
                assert got["explained"] == why["explained"]
                for column, share in why["attributions"].items():
                    assert got["attributions"][column] == pytest.approx(share, abs=1e-4)
                logged.setdefault(model, {})[p["request_id"]] = got
    plain = client.predict("churn", _rows("churn", 2, seed=9)).json()["predictions"]
    assert all("explanation" not in p for p in plain)
    # the request log tells explain requests from predict ones: each has its own SLO budget
    for model in logged:
        directory = prediction_log.requests_dir(cfg.paths.logs, model)

        def explained(d=directory) -> int:
            return sum(r["operation"] == "explain" and r["status"] == 200 for r in _read(d))

        _wait(lambda: explained() == 11)
    for model, explained in logged.items():
        directory = prediction_log.explanations_dir(cfg.paths.logs, model)
        _wait(lambda d=directory, e=explained: set(e) <= {r["request_id"] for r in _read(d)})
        rows = {r["request_id"]: r for r in _read(directory) if r["request_id"] in explained}
        assert len(rows) == len(explained) == (66 if model == "churn" else 44)
        for i, row in rows.items():
            assert (row["model"], row["version"]) == (model, 1)
            assert (row["base"], row["output"]) == (explained[i]["base"], explained[i]["output"])
            assert json.loads(row["attributions"]) == explained[i]["attributions"]


def test_promotion_during_a_steady_stream_fails_no_request(app):
    cfg, client = app
    rows = _rows("listings", 2, seed=7)
    outcomes: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            r = client.predict("listings", rows)
            outcomes.append((r.status_code, r.json().get("version")))

    registry = Registry(cfg.paths.registry)
    v1 = registry.get("listings", 1)
    registry.register("listings", {name: registry.read_bytes(v1, name) for name in v1.files})
    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: len(outcomes) > 50)
        registry.promote("listings", 2, reason="test: switch under load")
        _wait(lambda: any(v == 2 for _, v in outcomes[-20:]), timeout=60)
        n = len(outcomes)
        _wait(lambda: len(outcomes) > n + 50)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert {code for code, _ in outcomes} == {200}
    versions = [v for _, v in outcomes]
    assert versions[0] == 1 and versions[-1] == 2
    switched = versions.index(2)
    assert set(versions[switched + 20 :]) == {2}  # replicas do not flap back


@INGRESS
def test_feedback_is_accepted_and_logged(app):
    cfg, client = app
    ids = [
        p["request_id"] for p in client.predict("churn", _rows("churn", 3, 8)).json()["predictions"]
    ]
    one = requests.post(f"{client.base}/v1/feedback", json={"request_id": ids[0], "label": 1})
    many = requests.post(
        f"{client.base}/v1/feedback",
        json={"feedback": [{"request_id": i, "label": 0} for i in ids[1:]]},
    )
    assert (one.json(), many.json()) == ({"accepted": 1}, {"accepted": 2})
    bad = requests.post(f"{client.base}/v1/feedback", json={"request_id": "../x", "label": 1})
    assert bad.status_code == 422 and "request_id" in bad.text
    feedback = prediction_log.feedback_dir(cfg.paths.logs)
    _wait(lambda: set(ids) <= {r["request_id"] for r in _read(feedback)})
    labels = {r["request_id"]: r["label"] for r in _read(feedback)}
    assert [labels[i] for i in ids] == ["1", "0", "0"]


def test_simulated_traffic_is_served_and_its_labels_land_in_the_feedback_log(app):
    cfg, client = app
    sim = _config(
        cfg.paths.root,
        cfg.serve.port,
        "simulate.rows=300",
        "simulate.batch_rows=25",
        "simulate.invalid_fraction=0",
        "simulate.feedback_delay_seconds=0.2",
    )
    traffic = simulate(sim)  # the default URL: serve.host and serve.port
    _count(client, traffic)
    assert (traffic.url, traffic.model) == (client.base, "churn")
    assert (traffic.requests, traffic.rows_sent, traffic.rows_served) == (12, 300, 300)
    assert traffic.statuses == {"200": 12} and traffic.failed_requests == 0
    assert sum(traffic.versions.values()) == 300 and set(traffic.versions) <= {1, 2}
    assert traffic.feedback_posted == 300 and set(traffic.labeled) == set(traffic.served)
    assert 0 < traffic.p50_ms <= traffic.p99_ms
    assert dict(describe(traffic))["rows"] == "300 sent, 300 served"
    feedback = prediction_log.feedback_dir(cfg.paths.logs)
    _wait(lambda: set(traffic.labeled) <= {r["request_id"] for r in _read(feedback)})
    # each label is the generator's truth for the row that request id predicted
    truth = {r["customer_id"]: r["churned"] for r in traffic_table(sim).to_pylist()}
    log = _wait_for_log(cfg, "churn", lambda t: set(traffic.served) <= _answered_ids(t))
    customer = {r["request_id"]: r["customer_id"] for r in log if r["variant"] != "shadow"}
    labels = {r["request_id"]: r["label"] for r in _read(feedback)}
    assert all(labels[i] == json.dumps(truth[customer[i]]) for i in traffic.labeled)

    # planted invalid rows get their request refused; half the served rows' labels are posted
    partial = simulate(
        _config(
            cfg.paths.root,
            cfg.serve.port,
            "simulate.rows=40",
            "simulate.batch_rows=2",
            "simulate.invalid_fraction=0.2",
            "simulate.feedback_fraction=0.5",
            "simulate.feedback_delay_seconds=0",
        )
    )
    _count(client, partial)
    assert partial.statuses.get("422", 0) > 0 and partial.rows_served < 40
    assert partial.rows_served == 2 * partial.statuses["200"]
    assert "instances[" in partial.first_errors["422"]
    labeled = [y for y in partial.served.values() if y is not None]  # a planted null: no label
    assert partial.feedback_posted == round(0.5 * len(labeled))


def test_the_request_log_holds_a_row_per_request_with_its_status(app):
    cfg, client = app
    malformed = client.predict(
        "listings", None, data="{oops", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    two = _rows("listings", 2, seed=10)
    two[1]["sqft"] = 1.0  # under the minimum: the whole request is refused
    assert client.predict("listings", two).status_code == 422
    _wait(lambda: _request_counts(cfg) == _served_answers(cfg, client))
    rows = _read(prediction_log.requests_dir(cfg.paths.logs, "listings"))
    refused = {(r["status"], r["reason"], r["rows"]) for r in rows if r["status"] != 200}
    assert {(400, "malformed", 0), (422, "invalid", 2)} <= refused
    assert all(r["reason"] is None and r["rows"] > 0 for r in rows if r["status"] == 200)
    assert all(r["model"] == "listings" and r["latency_ms"] > 0 for r in rows)


def test_keel_metrics_reach_rays_prometheus_endpoint(app):
    _, client = app
    client.predict("listings", None, json={"instances": []})  # one rejection at least
    port = ray.nodes()[0]["MetricsExportPort"]
    wanted = [
        r'ray_keel_predictions(_total)?\{[^}]*model="churn"[^}]*variant="canary"',
        r'ray_keel_rejected_requests(_total)?\{[^}]*model="listings"[^}]*reason="invalid"',
        r"ray_keel_request_latency_ms_bucket\{",
        r"ray_serve_",
    ]

    def exported() -> bool:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return all(re.search(w, text) for w in wanted)

    _wait(exported, timeout=60)  # the metrics agent exports every few seconds


def test_a_version_that_fails_to_load_leaves_the_last_good_one_serving(app):
    cfg, client = app
    registry = Registry(cfg.paths.registry)
    good = registry.get("churn", "production")
    files = {name: registry.read_bytes(good, name) for name in good.files}
    broken = registry.register("churn", {**files, "model.pt": b"not a torch file"})
    registry.promote("churn", broken.version, reason="test: weights that cannot load")
    try:
        deadline = time.monotonic() + 30
        while True:  # the replicas notice the moved stage within serve.reload_seconds
            listed = requests.get(f"{client.base}/v1/models", timeout=10).json()["models"]
            (churn,) = (m for m in listed if m["model"] == "churn")
            if "primary" in churn["errors"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert broken.uri("model.pt") in churn["errors"]["primary"], churn
        assert churn["versions"]["primary"] == good.version
        for _ in range(5):
            r = client.predict("churn", _rows("churn", 2, seed=71))
            assert r.status_code == 200 and r.json()["version"] in (good.version, 2)
    finally:
        registry.rollback("churn", reason="test: back to the last good version")
    assert registry.stages("churn").production == good.version


def test_a_load_of_20000_predictions_at_concurrency_64_fails_no_request(app):
    """2,000 requests of 10 rows; the module's last test then finds each acknowledged row in
    the log exactly once."""
    _, client = app
    payloads = [json.dumps({"instances": _rows("churn", 10, seed=s)}).encode() for s in (61, 62)]
    url = f"{client.base}/v1/models/churn:predict"
    load = loadgen.run(url, payloads, concurrency=64, total=2_000, keep_answers=True)
    assert load.failed == 0 and load.ok == 2_000, load.statuses
    assert _acknowledge(client, "churn", load) == 20_000
    print(f"load: 20,000 predictions, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms")


@INGRESS
def test_a_steady_load_at_half_capacity_fails_nothing_and_grows_no_memory(app, session_workers):
    """The soak (issue 21, fault 5): the capacity measured by a closed-loop burst, then an open
    loop at half of it for SOAK_SECONDS (`make soak`: 10 minutes) while the ingress replica's
    RSS is sampled. No request fails, RSS grows by at most RSS_GROWTH_MIB after the first
    quarter (warm-up), and the module's last test finds every row in the log exactly once."""
    _, client = app
    payloads = [json.dumps({"instances": _rows("churn", 10, seed=s)}).encode() for s in (63, 64)]
    url = f"{client.base}/v1/models/churn:predict"
    title = "ray::ServeReplica:keel:Ingress"
    (replica,) = (p for p, cmdline in session_workers().items() if cmdline[:1] == [title])
    burst = loadgen.run(url, payloads, concurrency=16, total=1 << 30, seconds=3, keep_answers=True)
    assert burst.failed == 0, burst.statuses
    _acknowledge(client, "churn", burst)
    rate = burst.throughput_rps / 2
    rss: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not done.wait(0.5):
            rss.append((time.monotonic() - started, replica.memory_info().rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total = int(rate * SOAK_SECONDS)
    soak = loadgen.run(url, payloads, 64, total, rate_rps=rate, keep_answers=True)
    done.set()
    sampler.join()
    assert soak.failed == 0 and soak.ok == total, soak.statuses
    _acknowledge(client, "churn", soak)
    warm = [b for t, b in rss if t >= SOAK_SECONDS / 4]
    growth_mib = (max(warm) - warm[0]) / 2**20
    print(
        f"soak: {total:,} requests at {rate:.0f}/s (half of {burst.throughput_rps:.0f}/s) for "
        f"{soak.duration_s:.0f} s, p50 {soak.p50_ms:.1f} ms, p99 {soak.p99_ms:.1f} ms; replica "
        f"RSS {rss[0][1] / 2**20:.0f} MiB at the start, {warm[0] / 2**20:.0f} after warm-up, "
        f"{max(warm) / 2**20:.0f} at most: +{growth_mib:.1f} MiB"
    )
    assert growth_mib <= RSS_GROWTH_MIB


def test_fuzzed_requests_to_every_operation_get_no_5xx_and_the_app_stays_up(app):
    """Requests to every operation of the served OpenAPI document, generated from it (see
    api_fuzz): every answer is one the document declares, none a 5xx. 2,000 per operation with
    a body (90 per :explain) and 400 per bare one on the fused topology, then an outside corpus
    (the Big List of Naughty Strings in the query, headers, body and model name: api_fuzz.
    naughty); every tenth of them on the other, whose API is the same code. The predict and
    explain ones join the client's counts, so the module's last test finds them in the logs."""
    cfg, client = app
    spec = requests.get(f"{client.base}/openapi.json", timeout=10)
    generated = api_fuzz.requests_for(spec.text, FUZZ_PER_BODY, FUZZ_PER_BARE, FUZZ_PER_EXPLAIN)
    # 2 predict and 2 explain routes, feedback, models, healthz, readyz
    assert len(generated) == 8
    for (method, path), fuzz in generated.items():
        operation = spec.json()["paths"][path][method.lower()]
        body = FUZZ_PER_EXPLAIN if path.endswith(":explain") else FUZZ_PER_BODY
        assert len(fuzz) == (body if "requestBody" in operation else FUZZ_PER_BARE), path
        answers = api_fuzz.send(client.base, fuzz if cfg.serve.fused else fuzz[::10])
        statuses = Counter(a.status for a in answers)
        declared = {int(s) for s in operation["responses"]}
        crashed = [a for a in answers if a.status >= 500 or a.status not in declared]
        assert not crashed, (method, path, statuses, crashed[:3])
        # what the document calls valid is served: refusing it is a bug of the schema or of
        # the validation (the fuzz found such bugs; this keeps them fixed)
        refused = [(a.status, a.body[:300], a.fuzz.body) for a in answers if a.fuzz.valid]
        refused = [r for r in refused if r[0] != 200]
        assert not refused, (method, path, len(refused), refused[:3])
        # the outside corpus: a declared answer, or a 404 (400) for a naughty model name
        outside = api_fuzz.naughty(fuzz)
        naughty = api_fuzz.send(client.base, outside if cfg.serve.fused else outside[::10])
        wrong = [
            (a.status, a.fuzz, a.body[:200])
            for a in naughty
            if a.status not in (declared if a.fuzz.path == path else {400, 404})
        ]
        assert not wrong, (method, path, len(wrong), wrong[:3])
        for a in answers + naughty:
            if predict := re.fullmatch(r"/v1/models/(\w+):(predict|explain)", a.fuzz.path):
                with client.lock:
                    client.answered[(predict[1], a.status)] += 1
                    if a.status == 200:
                        ids = (p["request_id"] for p in json.loads(a.body)["predictions"])
                        client.acknowledged.update(ids)
        print(
            f"fuzz {method} {path}: {len(answers)} requests, {dict(statuses)}; naughty strings: "
            f"{len(naughty)}, {dict(Counter(a.status for a in naughty))}"
        )
    assert requests.get(f"{client.base}/readyz", timeout=10).status_code == 200
    assert client.predict("churn", _rows("churn", 3, seed=5)).status_code == 200


@INGRESS
def test_auth_requires_the_bearer_token(app, monkeypatch):
    cfg, client = app
    monkeypatch.setenv("KEEL_TEST_TOKEN", "s3cret")
    secured = _config(
        cfg.paths.root,
        cfg.serve.port,
        f"serve.fused={cfg.serve.fused}",
        "serve.auth_token_env=KEEL_TEST_TOKEN",
    )
    service.start(secured)  # an in-place update: the rest of the module runs secured
    row = _rows("churn", 1, seed=9)
    assert client.predict("churn", row).status_code == 401
    assert client.predict("churn", row, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.predict("churn", row, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    bearer = {"Authorization": "Basic s3cret"}  # the token, but not as a bearer token
    assert client.predict("listings", row, headers=bearer).status_code == 401
    assert client.predict("fraud", row).status_code == 401  # before the model lookup
    # every operation the OpenAPI document lists, but the probes, needs the token
    spec = requests.get(f"{client.base}/openapi.json", timeout=10).json()
    open_paths = {"/healthz", "/readyz"}
    for path, operations in spec["paths"].items():
        for method in operations:
            if path in open_paths or path.endswith(":predict"):
                continue  # predict routes: above, through the client that counts them
            if explain := re.fullmatch(r"/v1/models/(\w+):explain", path):
                r = client.predict(explain[1], None, op="explain", json={})  # logged: counted
            else:
                r = requests.request(method, f"{client.base}{path}", json={}, timeout=10)
            assert r.status_code == 401, (method, path, r.status_code)
    for path in open_paths:
        assert requests.get(f"{client.base}{path}", timeout=10).status_code == 200


def test_the_log_holds_exactly_one_row_per_acknowledged_instance_after_shutdown(app):
    cfg, client = app
    service.stop(cfg)
    rows = []
    for model in ("churn", "listings"):
        rows += _read(prediction_log.predictions_dir(cfg.paths.logs, model))
    served = Counter(r["request_id"] for r in rows if r["variant"] != "shadow")
    assert set(served) == client.acknowledged
    assert set(served.values()) == {1}
    # and the request log one row per predict request to a served model, 401s included
    assert _request_counts(cfg) == _served_answers(cfg, client)
    reasons = {200: None, 400: "malformed", 401: "unauthorized", 413: "too_large", 422: "invalid"}
    for model in ("churn", "listings"):
        logged = _read(prediction_log.requests_dir(cfg.paths.logs, model))
        assert {(r["status"], r["reason"]) for r in logged} <= set(reasons.items())
        instances = sum(r["rows"] for r in logged if r["status"] == 200)
        assert instances == sum(1 for r in rows if r["model"] == model and r["variant"] != "shadow")
    assert not _read(prediction_log.requests_dir(cfg.paths.logs, "fraud"))  # 404: no log


def test_simulate_without_an_app_says_how_to_start_one(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load([f"paths.root={tmp_path}", f"serve.port={port}", "simulate.rows=5"])
    with pytest.raises(TrafficError, match=f"no keel app answers at http://127.0.0.1:{port}"):
        simulate(cfg)


# ----------------------------------------------------------------------------- helpers


def _read(directory: str) -> list[dict]:
    return prediction_log.read(directory).to_pylist()


def _acknowledge(client: Client, model: str, load: loadgen.LoadResult) -> int:
    """A load's answers join what the client has seen acknowledged; the predictions."""
    predictions = [p for a in load.answers for p in json.loads(a)["predictions"]]
    with client.lock:
        client.answered[(model, 200)] += load.ok
        client.acknowledged.update(p["request_id"] for p in predictions)
    return len(predictions)


def _count(client: Client, traffic) -> None:
    """Traffic sent by `simulate` joins what the client has seen answered."""
    client.acknowledged.update(traffic.served)
    for status, n in traffic.statuses.items():
        client.answered[(traffic.model, int(status))] += n


def _request_counts(cfg) -> Counter:
    return Counter(
        (r["model"], r["status"])
        for model in cfg.serve.models
        for r in _read(prediction_log.requests_dir(cfg.paths.logs, model))
    )


def _served_answers(cfg, client: Client) -> Counter:
    return Counter({k: n for k, n in client.answered.items() if k[0] in cfg.serve.models})


def _answered_ids(rows: list[dict]) -> set[str]:
    return {r["request_id"] for r in rows if r["variant"] != "shadow"}


def _ids(rows: list[dict], variant: str) -> list[str]:
    return [r["request_id"] for r in rows if r["variant"] == variant]


def _wait_for_log(cfg, model: str, ready, timeout: float = 30) -> list[dict]:
    directory = prediction_log.predictions_dir(cfg.paths.logs, model)
    _wait(lambda: ready(_read(directory)), timeout)
    return _read(directory)


def _wait(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)

"""keel.runtime owns ray.init: a process can stop Ray and start an embedded one again."""

import subprocess
import sys
import textwrap

import requests

RESTART = textwrap.dedent("""
    import ray
    from keel import runtime
    from keel.config import load
    cfg = load(["ray.num_cpus=1", "ray.progress_bars=false"])
    runtime.ensure(cfg)
    first = ray.get_runtime_context().gcs_address
    ray.shutdown()
    runtime.ensure(cfg)  # RAY_ADDRESS exported by the first start must not be rejoined
    print("second cluster:", ray.get_runtime_context().gcs_address != first)
""")


def test_an_embedded_ray_can_be_started_again_in_the_same_process():
    # A subprocess: the shared test session's Ray must keep running.
    proc = subprocess.run(
        [sys.executable, "-c", RESTART], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "second cluster: True" in proc.stdout


def test_the_embedded_ray_offers_no_jobs_api_and_its_http_ports_want_the_token(ray_session):
    """The shared session is an embedded Ray as `keel` starts it (include_dashboard false).
    Every TCP port its processes listen on, tried from the node's own address as another
    machine would, is one of what is expected, and nothing else: a port that refuses a request
    without Ray's token (401); a read-only Prometheus exporter; one that does not speak HTTP/1
    (Ray's gRPC servers, which check the token themselves); a keel Serve app an earlier test
    left (its own OpenAPI document); or Serve's own proxy (with no app left, it names no
    route) or HAProxy (its stats and metrics ports, README: caveats). None serves the Jobs
    API."""
    import psutil
    import ray

    node_ip = ray.util.get_node_ip_address()
    ports: dict = {}  # address -> the name of the process listening
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            for c in process.net_connections("inet"):
                if c.status == "LISTEN":
                    ports[c.laddr] = process.name()
        except psutil.Error:
            continue
    seen: dict[str, list] = {k: [] for k in ("401", "metrics", "not http", "keel app", "serve")}
    other = []
    for address, name in ports.items():
        host = node_ip if address.ip in ("0.0.0.0", "::") else address.ip
        base = f"http://{host}:{address.port}"
        try:
            r = requests.get(f"{base}/api/jobs/", timeout=5)
        except requests.RequestException:
            seen["not http"].append(address.port)
            continue
        if r.status_code == 401:
            seen["401"].append(address.port)
        elif r.headers.get("content-type", "").startswith("text/plain") and "# HELP" in r.text:
            seen["metrics"].append(address.port)
        elif _keel_app(base):
            assert r.status_code == 404, (address, r.text[:200])  # never a job list
            seen["keel app"].append(address.port)
        elif name in SERVE_PROCESSES:  # Serve's proxy with no app, HAProxy's stats and metrics
            assert r.status_code != 200, (address, name, r.text[:200])  # never a job list
            seen["serve"].append(address.port)
        else:
            other.append((address, name, r.status_code, r.text[:200]))
    assert not other, f"unexpected HTTP services: {other}"
    assert 8265 not in {a.port for a in ports}  # no dashboard frontend, so no Jobs API
    assert seen["401"], f"no port refused a request without the token: {seen}"
    print(f"embedded Ray listening ports by answer: {seen}")


# the processes of a Serve instance that listen for HTTP: its proxy actor and HAProxy
SERVE_PROCESSES = ("ray::ProxyActor", "haproxy")


def _keel_app(base: str) -> bool:
    """A keel Serve app answers at `base`: its OpenAPI document names keel."""
    try:
        doc = requests.get(f"{base}/openapi.json", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("info", {}).get("title") == "keel"

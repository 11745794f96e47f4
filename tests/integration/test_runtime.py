"""keel.runtime owns ray.init: a process can stop Ray and start an embedded one again."""

import subprocess
import sys
import textwrap

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
    machine would: none serves the Jobs API, and an HTTP port either refuses a request without
    Ray's token (401) or is a read-only Prometheus exporter. Ray's gRPC servers (which check
    the token themselves) do not speak HTTP/1 and close the connection."""
    import psutil
    import ray
    import requests

    node_ip = ray.util.get_node_ip_address()
    ports = set()
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            ports |= {c.laddr for c in process.net_connections("inet") if c.status == "LISTEN"}
        except psutil.Error:
            continue
    seen: dict[str, list[int]] = {"401": [], "metrics": [], "not http": [], "other": []}
    for address in ports:
        host = node_ip if address.ip in ("0.0.0.0", "::") else address.ip
        try:
            r = requests.get(f"http://{host}:{address.port}/api/jobs/", timeout=5)
        except requests.RequestException:
            seen["not http"].append(address.port)
            continue
        if r.status_code == 401:
            seen["401"].append(address.port)
        elif r.headers.get("content-type", "").startswith("text/plain") and "# HELP" in r.text:
            seen["metrics"].append(address.port)
        else:  # e.g. a keel Serve app left by an earlier test: but never a job list
            assert not (
                r.ok
                and r.headers.get("content-type", "").startswith("application/json")
                and isinstance(r.json(), list)
            ), (address, r.text[:200])
            seen["other"].append(address.port)
    assert 8265 not in {a.port for a in ports}  # no dashboard frontend, so no Jobs API
    assert seen["401"], f"no port refused a request without the token: {seen}"
    print(f"embedded Ray listening ports by answer: {seen}")

"""The embedded Ray's own environment (ray.local_env): what it starts with."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel import runtime


def test_each_embedded_ray_gets_its_own_free_serve_ports(make_cfg):
    # Ray's fixed defaults (8404, 9101) let only one embedded Ray on a machine start Serve, and
    # two fallback proxies on 8500 (SO_REUSEPORT) answered each other's requests
    cfg = make_cfg()
    first, second = runtime._local_env(cfg), runtime._local_env(cfg)
    ports = [int(env[var]) for env in (first, second) for var in runtime.SERVE_PORTS]
    assert len(set(ports)) == 8 and not {8404, 9101, 8500, 9500} & set(ports)
    assert first["RAY_SERVE_ENABLE_HA_PROXY"] == "1"


def test_free_ports_come_from_outside_the_kernels_ephemeral_range_and_differ():
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [runtime.free_port() for _ in range(50)]
    assert len(set(ports)) == 50  # never twice from one process
    assert all(p in runtime.CHOSEN_PORTS and not low <= p <= high for p in ports)
    with socket.socket() as s:  # free on every interface, as HAProxy binds them
        s.bind(("0.0.0.0", ports[-1]))


def test_a_chosen_port_is_claimed_for_every_process_until_the_claim_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "PORT_CLAIMS", tmp_path)
    # another process's choices: the claim files it left (1,000 draws from 12,768 ports
    # would repeat one ~39 times over without them)
    taken = [runtime.free_port() for _ in range(1000)]
    assert len(set(taken)) == 1000
    assert {int(p.name) for p in tmp_path.iterdir()} == set(taken)
    script = (
        "import sys; from pathlib import Path; from keel import runtime; "
        "runtime.PORT_CLAIMS = Path(sys.argv[1]); "
        "print(' '.join(str(runtime.free_port()) for _ in range(1000)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert not set(taken) & {int(p) for p in other.stdout.split()}

    every = set(runtime.CHOSEN_PORTS)
    for port in every - set(taken) - {int(p) for p in other.stdout.split()}:
        (tmp_path / str(port)).touch()
    with pytest.raises(OSError, match="no free port in 20000-32767"):
        runtime.free_port()
    old = time.time() - runtime.CLAIM_SECONDS - 1
    for claim in tmp_path.iterdir():
        os.utime(claim, (old, old))
    port = runtime.free_port()  # a stale claim is claimed anew
    assert time.time() - (tmp_path / str(port)).stat().st_mtime < 60


def test_haproxy_ports_named_in_the_config_are_kept(make_cfg):
    cfg = make_cfg("+ray.local_env.RAY_SERVE_HAPROXY_STATS_PORT='18404'")
    env = runtime._local_env(cfg)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] != "9101"


def test_without_haproxy_no_ports_are_chosen(make_cfg):
    env = runtime._local_env(make_cfg("~ray.local_env.RAY_SERVE_ENABLE_HA_PROXY"))
    assert not set(runtime.SERVE_PORTS) & set(env)


def test_a_child_that_starts_its_own_ray_gets_serve_ports_of_its_own():
    parent = {
        "PATH": "/bin",
        "RAY_ADDRESS": "127.0.0.1:6379",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        **{var: "20000" for var in runtime.SERVE_PORTS},
    }
    child = runtime.own_ray_env(parent)
    assert "RAY_ADDRESS" not in child and child["PATH"] == "/bin"
    ports = [int(child[var]) for var in runtime.SERVE_PORTS]
    assert len(set(ports)) == len(ports) and 20000 not in ports
    assert not set(runtime.SERVE_PORTS) & set(runtime.own_ray_env({"PATH": "/bin"}))


def test_a_ray_process_does_not_build_the_rfc3987_grammar_on_import():
    # Every Ray worker, actor and driver imports ray; jsonschema >= 4.25 then imports
    # rfc3987-syntax, which builds a grammar at import (1.7 s of a 2.7 s `import ray` here).
    # constraints.txt pins jsonschema below that.
    import subprocess
    import sys

    code = "import sys, ray, jsonschema; print('rfc3987_syntax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The embedded Ray's own environment (ray.local_env): what it starts with."""

from keel import runtime


def test_each_embedded_ray_gets_its_own_free_haproxy_ports(make_cfg):
    # Ray's fixed defaults (8404, 9101) let only one embedded Ray on a machine start Serve
    cfg = make_cfg()
    first, second = runtime._local_env(cfg), runtime._local_env(cfg)
    ports = [int(env[var]) for env in (first, second) for var in runtime.HAPROXY_PORTS]
    assert len(set(ports)) == 4 and not {8404, 9101} & set(ports)
    assert first["RAY_SERVE_ENABLE_HA_PROXY"] == "1"


def test_haproxy_ports_named_in_the_config_are_kept(make_cfg):
    cfg = make_cfg("+ray.local_env.RAY_SERVE_HAPROXY_STATS_PORT='18404'")
    env = runtime._local_env(cfg)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] != "9101"


def test_without_haproxy_no_ports_are_chosen(make_cfg):
    env = runtime._local_env(make_cfg("~ray.local_env.RAY_SERVE_ENABLE_HA_PROXY"))
    assert not set(runtime.HAPROXY_PORTS) & set(env)

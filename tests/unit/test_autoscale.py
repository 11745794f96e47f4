"""Serve autoscaling derived from the latency SLO and the version's latency profile."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from keel.config.schema import BatchingConfig, ServeConfig, SloConfig
from keel.serving.autoscale import OVERHEAD_MS, batch_ms, derive

PROFILE = {"device": "cpu", "ms_per_batch": {"256": 40.0, "1": 2.0, "32": 10.0}}


def flat(ms: float, size: int = 32) -> dict:
    """A profile where a batch of `size` rows takes `ms`."""
    return {"ms_per_batch": {str(size): ms}}


@pytest.fixture(scope="module")
def base():
    """The default composed config (serve/default.yaml, slo/default.yaml)."""
    from keel.config import load

    return load([])


@pytest.fixture(scope="module")
def overridden():
    from keel.config import load

    return load(
        [
            "slo.latency_p99_ms=50",
            "slo.throughput_rps=2000",
            "+serve.autoscaling.min_replicas=2",
            "+serve.autoscaling.upscale_delay_s=1.5",
            "serve.batching.max_batch_size=16",
        ]
    )


def with_(cfg, *, serve: dict | None = None, slo: dict | None = None, batch: int | None = None):
    s = replace(cfg.serve, **(serve or {}))
    if batch is not None:
        s = replace(s, batching=replace(s.batching, max_batch_size=batch))
    return s, replace(cfg.slo, **(slo or {}))


# ----------------------------------------------------------------------------- batch_ms


def test_batch_ms_without_a_profile_assumes_a_small_model():
    assert batch_ms({}, 32) == 5.0
    assert batch_ms({"ms_per_batch": {}}, 1) == 5.0
    assert batch_ms({"device": "cpu"}, 256) == 5.0


def test_batch_ms_at_the_profiled_sizes():
    assert batch_ms(PROFILE, 1) == 2.0
    assert batch_ms(PROFILE, 32) == 10.0
    assert batch_ms(PROFILE, 256) == 40.0


def test_batch_ms_interpolates_between_points_sorted_numerically():
    assert batch_ms(PROFILE, 16) == pytest.approx(2.0 + 8.0 * 15 / 31)
    assert batch_ms(PROFILE, 144) == pytest.approx(25.0)
    assert batch_ms(PROFILE, 33) == pytest.approx(10.0 + 30.0 / 224)


def test_batch_ms_extrapolates_proportionally_above_and_floors_below():
    assert batch_ms(PROFILE, 512) == pytest.approx(80.0)
    assert batch_ms(PROFILE, 1024) == pytest.approx(160.0)
    assert batch_ms(flat(8.0, 32), 16) == 8.0  # below the smallest size: never faster
    assert batch_ms(flat(8.0, 32), 64) == pytest.approx(16.0)


def test_batch_ms_accepts_int_keys_and_values():
    assert batch_ms({"ms_per_batch": {1: 2, 3: 6}}, 2) == pytest.approx(4.0)


# ----------------------------------------------------------------------------- derive


def test_derive_defaults_have_the_serve_keys(base):
    out = derive(base.serve, base.slo, {})
    cfg = out["autoscaling_config"]
    assert set(cfg) == {
        "min_replicas",
        "max_replicas",
        "initial_replicas",
        "target_ongoing_requests",
        "upscale_delay_s",
        "downscale_delay_s",
        "metrics_interval_s",
        "look_back_period_s",
    }
    b = base.serve.batching.max_batch_size
    # 5 ms per batch fits 17 batches into (100 - 10 - 2) ms: capped at 4 batches
    assert cfg["target_ongoing_requests"] == 4 * b
    assert cfg["min_replicas"] == cfg["initial_replicas"] == 1
    assert cfg["max_replicas"] == base.serve.max_replicas
    assert cfg["metrics_interval_s"] < cfg["upscale_delay_s"]  # a load is seen before acted on
    assert cfg["look_back_period_s"] > 10  # Serve warns at or under 10 s
    assert out["max_ongoing_requests"] > cfg["target_ongoing_requests"]


@pytest.mark.parametrize(
    ("ms", "target"),
    [(100.0, 1), (80.0, 32), (40.0, 64), (25.0, 96), (20.0, 128), (1.0, 128)],
)
def test_target_is_whole_batches_within_the_budget(base, ms, target):
    # budget (100 - 10 - 2) = 88 ms; floor(88 / ms) batches of 32, at most 4, at least 1 request
    assert base.slo.latency_p99_ms - OVERHEAD_MS - base.serve.batching.wait_ms == 88.0
    out = derive(base.serve, base.slo, flat(ms))
    assert out["autoscaling_config"]["target_ongoing_requests"] == target


def test_target_grows_when_the_model_is_faster(base):
    targets = [
        derive(base.serve, base.slo, flat(ms))["autoscaling_config"]["target_ongoing_requests"]
        for ms in (200.0, 80.0, 40.0, 25.0, 20.0, 5.0, 0.01)
    ]
    assert targets == sorted(targets)
    assert targets[0] < targets[2] < targets[4]


def test_target_shrinks_when_the_slo_is_tighter(base):
    targets = []
    for p99 in (200.0, 100.0, 50.0, 30.0, 15.0, 5.0):
        serve, slo = with_(base, slo={"latency_p99_ms": p99})
        targets.append(
            derive(serve, slo, flat(10.0))["autoscaling_config"]["target_ongoing_requests"]
        )
    assert targets == sorted(targets, reverse=True)
    assert targets[1] > targets[2] > targets[3]
    assert targets[-1] == 1  # a budget below the overhead: still one request, never zero


@pytest.mark.parametrize("p99", [0.5, 11.0, 12.5])
def test_target_never_below_one(base, p99):
    serve, slo = with_(base, slo={"latency_p99_ms": p99})
    out = derive(serve, slo, flat(500.0))
    assert out["autoscaling_config"]["target_ongoing_requests"] == 1
    assert out["max_ongoing_requests"] >= 2


@pytest.mark.parametrize("b", [1, 8, 32, 64])
def test_target_is_capped_at_four_batches(base, b):
    serve, slo = with_(base, slo={"latency_p99_ms": 10_000.0}, batch=b)
    out = derive(serve, slo, flat(0.5, b))
    assert out["autoscaling_config"]["target_ongoing_requests"] == 4 * b


def test_min_replicas_rises_with_throughput_and_is_capped(base):
    # 40 ms per batch of 32: 800 rps per replica, 560 rps at 70% load
    mins = []
    for rps in (50.0, 560.0, 561.0, 1000.0, 2000.0, 5000.0):
        serve, slo = with_(base, slo={"throughput_rps": rps}, serve={"max_replicas": 16})
        mins.append(derive(serve, slo, flat(40.0))["autoscaling_config"]["min_replicas"])
    assert mins == [1, 1, 2, 2, 4, 9]
    serve, slo = with_(base, slo={"throughput_rps": 5000.0}, serve={"max_replicas": 4})
    cfg = derive(serve, slo, flat(40.0))["autoscaling_config"]
    assert cfg["min_replicas"] == cfg["max_replicas"] == cfg["initial_replicas"] == 4


def test_explicit_autoscaling_keys_win(base):
    explicit = {
        "min_replicas": 3,
        "target_ongoing_requests": 7,
        "upscale_delay_s": 1.0,
        "look_back_period_s": 30.0,
    }
    serve, slo = with_(base, serve={"autoscaling": explicit})
    out = derive(serve, slo, flat(40.0))
    cfg = out["autoscaling_config"]
    assert {k: cfg[k] for k in explicit} == explicit
    assert cfg["initial_replicas"] == 3  # follows the explicit minimum
    assert cfg["max_replicas"] == base.serve.max_replicas
    assert cfg["downscale_delay_s"] == 60.0
    assert out["max_ongoing_requests"] == 10  # from the explicit target: ceil(1.3 * 7)
    assert serve.autoscaling == explicit  # the config itself is not modified


def test_explicit_initial_replicas_wins(base):
    serve, slo = with_(base, serve={"autoscaling": {"min_replicas": 1, "initial_replicas": 3}})
    assert derive(serve, slo, {})["autoscaling_config"]["initial_replicas"] == 3


@pytest.mark.parametrize("target", [1, 2, 3, 10, 100])
def test_max_ongoing_requests_exceeds_the_target(base, target):
    serve, slo = with_(base, serve={"autoscaling": {"target_ongoing_requests": target}})
    out = derive(serve, slo, {})
    assert out["max_ongoing_requests"] > target
    assert out["max_ongoing_requests"] >= math.ceil(1.3 * target)


def test_overrides_from_the_command_line(overridden):
    assert overridden.slo.latency_p99_ms == 50.0
    assert overridden.serve.autoscaling == {"min_replicas": 2, "upscale_delay_s": 1.5}
    out = derive(overridden.serve, overridden.slo, flat(10.0, 16))
    cfg = out["autoscaling_config"]
    # (50 - 10 - 2) / 10 -> 3 batches of 16
    assert cfg["target_ongoing_requests"] == 48
    assert cfg["min_replicas"] == cfg["initial_replicas"] == 2  # explicit, though 2000 rps
    assert cfg["upscale_delay_s"] == 1.5
    assert out["max_ongoing_requests"] == math.ceil(1.3 * 48)


def test_derived_min_replicas_from_overridden_throughput(overridden):
    serve = replace(overridden.serve, autoscaling={})
    # 16 rows in 10 ms: 1600 rps per replica, 1120 at 70% -> 2 replicas for 2000 rps
    assert derive(serve, overridden.slo, flat(10.0, 16))["autoscaling_config"]["min_replicas"] == 2


def test_derive_works_on_plain_dataclasses():
    serve = ServeConfig(batching=BatchingConfig(max_batch_size=10, wait_ms=0.0), max_replicas=8)
    slo = SloConfig(latency_p99_ms=60.0, throughput_rps=100.0)
    cfg = derive(serve, slo, flat(25.0, 10))["autoscaling_config"]
    assert cfg["target_ongoing_requests"] == 20  # floor(50 / 25) batches of 10
    assert cfg["min_replicas"] == 1  # 400 rps per replica
    assert cfg["max_replicas"] == 8


def test_derived_min_replicas_respects_an_explicit_max_replicas(base):
    serve, slo = with_(
        base, serve={"autoscaling": {"max_replicas": 2}}, slo={"throughput_rps": 5000.0}
    )
    cfg = derive(serve, slo, flat(40.0))["autoscaling_config"]
    assert cfg["max_replicas"] == 2
    assert cfg["min_replicas"] <= cfg["max_replicas"]
    assert cfg["initial_replicas"] <= cfg["max_replicas"]

"""Serve autoscaling derived from the latency SLO and the served version's latency profile.

With a p99 budget L, an HTTP + routing overhead o, a batch wait w and a time S(b) to run a
batch of b requests, a replica keeps within budget while about (L - o - w) / S(b) batches
are queued, so target_ongoing_requests = floor((L - o - w) / S(b)) * b. Capacity per replica
is b / S(b); enough replicas for the SLO's throughput at 70% load is the floor. Keys given in
`serve.autoscaling` win over derived ones.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from keel.config.schema import ServeConfig, SloConfig

OVERHEAD_MS = 10.0  # proxy + ingress + handle hop on a small machine (measured ~9 ms)
TARGET_LOAD = 0.7


def batch_ms(profile: dict, size: int) -> float:
    """Time for one batch of `size` rows, interpolated in the registry's latency profile."""
    points = sorted((int(n), float(ms)) for n, ms in profile.get("ms_per_batch", {}).items())
    if not points:
        return 5.0  # no profile (an old version): assume a small model
    if size <= points[0][0]:
        return points[0][1]
    for (n0, t0), (n1, t1) in itertools.pairwise(points):
        if size <= n1:
            return t0 + (t1 - t0) * (size - n0) / (n1 - n0)
    n, t = points[-1]
    return t * size / n


def derive(serve: ServeConfig, slo: SloConfig, profile: dict) -> dict[str, Any]:
    """autoscaling_config and max_ongoing_requests for one model deployment."""
    b = serve.batching.max_batch_size
    s = max(batch_ms(profile, b), 0.1)
    budget = slo.latency_p99_ms - OVERHEAD_MS - serve.batching.wait_ms
    target = max(1, math.floor(max(budget, 0.0) / s) * b)
    target = min(target, 4 * b)  # deeper queues only add tail latency
    capacity_rps = b / s * 1000
    base = math.ceil(slo.throughput_rps / (TARGET_LOAD * capacity_rps))
    cfg = {
        "min_replicas": min(max(1, base), serve.max_replicas),
        "max_replicas": serve.max_replicas,
        "target_ongoing_requests": target,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
        # Ray 2.60's replicas report their ongoing requests every metrics_interval_s (10 s by
        # default; its deprecation names env vars that replicas do not read yet), so a load
        # went unseen for up to 10 s: a second replica took 12-23 s in bench=autoscale, 6.5 s
        # with reports every 0.5 s
        "metrics_interval_s": 2.0,
        "look_back_period_s": 15.0,  # must exceed the metrics interval
    }
    cfg.update(serve.autoscaling)
    if "min_replicas" not in serve.autoscaling:  # a derived floor never exceeds a given ceiling
        cfg["min_replicas"] = min(cfg["min_replicas"], cfg["max_replicas"])
    cfg["initial_replicas"] = cfg.get("initial_replicas", cfg["min_replicas"])
    max_ongoing = max(
        cfg["target_ongoing_requests"] + 1, math.ceil(1.3 * cfg["target_ongoing_requests"])
    )
    return {"autoscaling_config": cfg, "max_ongoing_requests": max_ongoing}

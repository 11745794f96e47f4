"""keel's own Prometheus metrics, exported through Ray's metrics agent beside Serve's."""

from __future__ import annotations

from ray.serve import metrics

LATENCY_BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500]


class ServeMetrics:
    def __init__(self) -> None:
        self.predictions = metrics.Counter(
            "keel_predictions",
            description="Instances predicted, per model, version and variant.",
            tag_keys=("model", "version", "variant"),
        )
        self.latency = metrics.Histogram(
            "keel_request_latency_ms",
            description="Predict request latency at the ingress, in milliseconds.",
            boundaries=LATENCY_BUCKETS_MS,
            tag_keys=("model", "version"),
        )
        self.rejections = metrics.Counter(
            "keel_rejected_requests",
            description="Requests refused with a 4xx or a 503, per model and reason.",
            tag_keys=("model", "reason"),
        )
        self.unlogged = metrics.Counter(
            "keel_unlogged_requests",
            description="Request-log rows the spool could not take (its disk full), per model.",
            tag_keys=("model",),
        )

    def served(self, model: str, version: int, variant: str, rows: int, latency_ms: float) -> None:
        tags = {"model": model, "version": str(version)}
        self.predictions.inc(rows, tags={**tags, "variant": variant})
        self.latency.observe(latency_ms, tags=tags)

    def rejected(self, model: str, reason: str) -> None:
        self.rejections.inc(tags={"model": model, "reason": reason})

    def not_logged(self, model: str) -> None:
        self.unlogged.inc(tags={"model": model})

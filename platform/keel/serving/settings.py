"""What the serving replicas need of the config, built once by the driver and handed to the
ingress and to each model server: typed, so a replica never reads a key by its string."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from keel.config import KeelConfig
from keel.config.schema import BatchingConfig, ExplainConfig, PredictionLogConfig, ServedModel


@dataclass(frozen=True)
class RunnerSettings:
    """One served model, as a ModelRunner takes it (in its deployment or in the ingress)."""

    model: str  # the registry model
    served: ServedModel  # versions, canary, shadow, post-processing
    registry: str  # the registry root
    batching: BatchingConfig
    reload_seconds: float  # how often the stages are re-read
    explain: ExplainConfig  # the explain path's steps and its own batching


@dataclass(frozen=True)
class ServeSettings:
    """The ingress's settings, with every model's runner settings."""

    logs: str  # paths.logs: where the prediction, request and feedback logs go
    max_rows_per_request: int
    max_body_bytes: int
    auth_token_env: str | None  # the env var holding the bearer token, if any
    log: PredictionLogConfig  # when buffered log rows are flushed, and where they are spooled
    runners: dict[str, RunnerSettings]

    @property
    def fingerprint(self) -> str:
        """Names these settings: the ingress reports it on /readyz, so a deploy can tell its
        own app from the one it replaces, which answers until the update is through."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, cfg: KeelConfig) -> ServeSettings:
        s = cfg.serve
        return cls(
            logs=cfg.paths.logs,
            max_rows_per_request=s.max_rows_per_request,
            max_body_bytes=s.max_body_bytes,
            auth_token_env=s.auth_token_env,
            log=s.log,
            runners={
                model: RunnerSettings(
                    model, served, cfg.paths.registry, s.batching, s.reload_seconds, s.explain
                )
                for model, served in s.models.items()
            },
        )

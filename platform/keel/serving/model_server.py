"""One served model: its primary version, an optional canary and shadow, dynamic batching, and a
watch on the registry so a stage change switches versions in place. It runs inside each ingress
replica (serve.fused) or as its own deployment (ModelServer).

Switching loads the new version beside the old one and swaps a reference, so requests in flight
finish on the version they started with and none fails. A version that cannot be loaded (a
corrupted file) is logged and reported by `info()`; the replica keeps serving the last good one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from keel.config import to_dict
from keel.config.schema import ServedModel
from keel.models.infer import probabilities, score
from keel.registry import Registry
from keel.registry.store import version_number

from .predictor import NotExplainable, Predictor
from .settings import RunnerSettings

log = logging.getLogger(__name__)

VARIANTS = ("primary", "canary", "shadow")


class ModelRunner:
    """A model's versions in this process: in its own deployment (ModelServer) or inside each
    ingress replica (serve.fused)."""

    def __init__(self, runner: RunnerSettings) -> None:
        self.model = runner.model
        self.served: ServedModel = runner.served
        self.registry = Registry(runner.registry)
        self.refs = {
            "primary": self.served.version,
            "canary": self.served.canary.version if self.served.canary.percent > 0 else None,
            "shadow": self.served.shadow,
        }
        self.loaded: dict[str, Predictor | None] = {
            v: self._load(ref) if ref is not None else None for v, ref in self.refs.items()
        }
        self.errors: dict[str, str] = {}
        self._batched.set_max_batch_size(runner.batching.max_batch_size)
        self._wait_s = runner.batching.wait_ms / 1000
        self._in_flight = 0  # predict calls not yet answered, this one included
        # explanations cost tens of predictions each: a batch, size and wait of their own, so
        # an explain request never holds up a predict batch
        self._explain = runner.explain
        self._explained.set_max_batch_size(runner.explain.max_batch_size)
        self._explaining = 0
        # ... and a thread of their own at the lowest CPU priority: where predict and explain
        # want the same cores, the kernel gives them to predict (explanations take the rest)
        self._explainer = explain_thread()
        self._reload_seconds = runner.reload_seconds
        self._watch: asyncio.Task | None = None

    def _follow_stages(self) -> None:
        """Start watching the registry once an event loop runs this replica's calls."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._follow(self._reload_seconds))

    def _load(self, ref: str) -> Predictor:
        return Predictor.load(self.registry, self.model, ref, self.served.postprocess)

    async def _follow(self, every: float) -> None:
        """Re-resolve stage references; load a moved stage's version, then swap."""
        while True:
            await asyncio.sleep(every)
            for variant, ref in self.refs.items():
                if ref is None or version_number(ref) is not None:  # pinned: nothing to follow
                    continue
                current = self.loaded[variant]
                try:
                    mv = await asyncio.to_thread(self.registry.get, self.model, ref)
                    if current is not None and mv.version == current.version.version:
                        continue
                    self.loaded[variant] = await asyncio.to_thread(self._load, str(mv.version))
                    self.errors.pop(variant, None)
                    log.info("%s %s now serves %s", self.model, variant, mv.label)
                except Exception as e:  # keep serving the last good version, and say why
                    if self.errors.get(variant) != str(e):
                        log.error("%s %s: cannot load %s: %s", self.model, variant, ref, e)
                    self.errors[variant] = str(e)

    async def info(self) -> dict[str, Any]:
        """What is served now (GET /v1/models)."""
        self._follow_stages()
        ds = self.loaded["primary"].dataset
        return {
            "model": self.model,
            "task": ds.task.value,
            "versions": {v: p.version.version if p else None for v, p in self.loaded.items()},
            "refs": self.refs,
            "canary_percent": self.served.canary.percent if self.refs["canary"] else 0.0,
            "id_column": ds.id_column,
            "errors": dict(self.errors),
        }

    async def contract(self) -> dict[str, Any]:
        """The request columns and the required ones: what the ingress validates requests by."""
        primary = self.loaded["primary"]
        return {
            "columns": {c: to_dict(s) for c, s in primary.request_columns.items()},
            "required": primary.features.input_columns,
        }

    async def predict(self, rows: list[dict]) -> dict[str, Any]:
        """Predict one request's rows on the primary version (or the canary, by chance)."""
        self._follow_stages()
        canary = self.loaded["canary"] is not None and (
            random.random() * 100 < self.served.canary.percent
        )
        self._in_flight += 1
        try:
            # A batch waits wait_ms for company only when there is some: a lone request (one in
            # flight) runs at once instead of paying the wait for requests that are not coming.
            # The queue reads the timeout when a batch's first request arrives.
            self._batched.set_batch_wait_timeout_s(self._wait_s if self._in_flight > 1 else 0.0)
            return await self._batched(rows, "canary" if canary else "primary")
        finally:
            self._in_flight -= 1

    async def explain(self, rows: list[dict]) -> dict[str, Any]:
        """Predict and explain one request's rows on the primary version (never the canary or
        the shadow: an explanation says why the version of record answered)."""
        self._follow_stages()
        self._explaining += 1
        try:
            wait = self._explain.wait_ms / 1000 if self._explaining > 1 else 0.0
            self._explained.set_batch_wait_timeout_s(wait)
            return await self._explained(rows)
        finally:
            self._explaining -= 1

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def _explained(self, requests: list[list[dict]]) -> list[dict]:
        predictor = self.loaded["primary"]
        rows = [row for request in requests for row in request]
        try:
            # off the event loop: an explanation's tens of passes would stall every predict
            # batch of this replica for as long (torch and the tree libraries release the GIL)
            raw, outputs, explanations = await asyncio.get_running_loop().run_in_executor(
                self._explainer, predictor.explain_rows, rows, self._explain.steps
            )
        except NotExplainable as e:
            return [{"refused": str(e)} for _ in requests]
        results: list[dict] = [{} for _ in requests]
        _answers(predictor, "primary", requests, raw, outputs, results, range(len(requests)))
        start = 0
        for result, request in zip(results, requests, strict=True):
            result["explanations"] = explanations[start : start + len(request)]
            start += len(request)
        return results

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, requests: list[list[dict]], variants: list[str]) -> list[dict]:
        """Requests of a batch grouped by variant, each group one features + network call."""
        results: list[dict] = [{} for _ in requests]
        for variant in set(variants):
            picked = [i for i, v in enumerate(variants) if v == variant]
            self._run(self.loaded[variant], variant, [requests[i] for i in picked], results, picked)
        shadow = self.loaded["shadow"]
        if shadow is not None:
            shadowed: list[dict] = [{} for _ in requests]
            self._run(shadow, "shadow", requests, shadowed, range(len(requests)))
            for result, copy in zip(results, shadowed, strict=True):
                result["shadow"] = copy
        return results

    @staticmethod
    def _run(predictor: Predictor, variant: str, requests, results, slots) -> None:
        rows = [row for request in requests for row in request]
        raw, outputs = predictor.predict_rows(rows)
        _answers(predictor, variant, requests, raw, outputs, results, slots)

    def stop(self) -> None:
        """Stop following the registry: a shutting-down replica loads nothing more."""
        if self._watch is not None:
            self._watch.cancel()
        self._explainer.shutdown(wait=False)

    def __del__(self) -> None:  # Serve's shutdown hook of a ModelServer replica
        self.stop()

    def ready(self) -> bool:
        return self.loaded["primary"] is not None


def explain_thread() -> ThreadPoolExecutor:
    """One thread, started at the first explanation, at nice 19 (the lowest priority)."""
    return ThreadPoolExecutor(1, "keel-explain", initializer=_lowest_priority)


def _lowest_priority() -> None:
    # on Linux a nice value is the calling thread's alone: the replica's others keep theirs
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _answers(predictor: Predictor, variant: str, requests, raw, outputs, results, slots) -> None:
    """A batch's predictions split back into each request's answer, at its slot."""
    start = 0
    for slot, request in zip(slots, requests, strict=True):
        end = start + len(request)
        part = raw[start:end]
        results[slot] = {
            "version": predictor.version.version,
            "variant": variant,
            "raw": part.tolist(),
            "score": score(part).tolist(),
            "probabilities": probabilities(part).to_pylist(),  # None unless multiclass
            "outputs": outputs[start:end],
        }
        start = end


ModelServer = serve.deployment(name="ModelServer")(ModelRunner)
